"""Login, logout and account views."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import configured, db, limiter
from ..forms import EmptyForm
from ..models import User, new_token
from . import bp
from .claims import Browser, add_claim, holds_claim, may_use_without_password, remember_browser, this_browser
from .forms import LoginForm, PasswordForm
from .lockout import count_failure, locked_out
from .nicknames import NicknameError
from .redirects import safe_next
from .users import find_or_create_user, password_matches, set_password

TAKEN = (
    "“{}” is taken: it belongs to the browser that first used it. If it is yours, open your "
    "account page (/account) in that browser and set a password; then you can log in with it anywhere."
)


def password_problem(user: User, password: str | None, browser: Browser) -> tuple[str, int] | None:
    """Why this password does not open the nickname, with the status to answer; None if it does."""
    claim_hash = browser.secret_hash if holds_claim(user, browser) else None
    if locked_out(user, claim_hash):
        return "Too many wrong passwords for this nickname. Please wait a few minutes.", 429
    if not password_matches(user, password):
        count_failure(user, claim_hash)
        return "The password is missing or wrong.", 422
    return None


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(configured("LOGIN_RATE_LIMIT"), methods=["POST"])
def login() -> ResponseReturnValue:
    """Log in with a nickname, creating it on first use; it then belongs to this browser."""
    target = request.args.get("next")
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(target))
    form = LoginForm()
    if form.validate_on_submit():
        browser = this_browser()
        try:
            user, created = find_or_create_user(form.nickname.data or "")
        except NicknameError as error:
            form.nickname.errors = [*form.nickname.errors, str(error)]
            return render_template("auth/login.html", form=form), 422
        if created:
            add_claim(user, browser)  # in the transaction that creates the user
            if form.password.data:
                set_password(user, form.password.data)
        elif user.has_password:
            problem = password_problem(user, form.password.data, browser)
            if problem:
                message, status = problem
                form.password.errors = [*form.password.errors, f"This nickname is protected. {message}"]
                return render_template("auth/login.html", form=form), status
            add_claim(user, browser)
        elif not may_use_without_password(user, browser):
            db.session.rollback()
            form.nickname.errors = [*form.nickname.errors, TAKEN.format(user.nickname)]
            return render_template("auth/login.html", form=form), 422
        elif form.password.data:
            flash(
                "This nickname has no password, so the one you typed was not saved. "
                "You can set one on your account page.",
                "warning",
            )
        db.session.commit()
        session.clear()  # nothing from before the login survives it
        login_user(user)
        session.permanent = True
        flash(f"Welcome{'' if created else ' back'}, {user.nickname}!", "success")
        response = redirect(safe_next(target))
        remember_browser(response, browser)
        return response
    status = 422 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["GET", "POST"])
@login_required
def logout() -> ResponseReturnValue:
    """GET asks for confirmation; POST signs this person out everywhere (the claims stay)."""
    form = EmptyForm()
    if form.validate_on_submit():
        # A new token makes every copy of the old login cookie worthless.
        current_user.session_token = new_token()
        db.session.commit()
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
        return redirect(url_for("groups.dashboard"))
    return render_template("auth/logout.html", form=form)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> ResponseReturnValue:
    """Set or change the password that lets the nickname log in from other browsers."""
    form = PasswordForm()
    if form.validate_on_submit():
        problem = current_user.has_password and password_problem(
            current_user, form.current_password.data, this_browser()
        )
        if problem:
            form.current_password.errors = [*form.current_password.errors, problem[0]]
        else:
            set_password(current_user, form.new_password.data or "")
            db.session.commit()
            login_user(current_user)  # the token changed: keep this session, drop the others
            session.permanent = True
            flash("Your nickname is now protected by this password.", "success")
            return redirect(url_for("auth.account"))
    status = 422 if form.errors else 200
    return render_template("auth/account.html", form=form), status

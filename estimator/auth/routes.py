"""Login, logout and account views."""

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from limits import parse

from ..extensions import configured, db, limiter
from ..forms import EmptyForm
from ..models import new_token
from . import bp
from .forms import LoginForm, PasswordForm
from .redirects import safe_next
from .users import find_or_create_user, password_matches, set_password

FAILURE_SCOPE = "password-failures"


def _failure_limit():
    """The configured limit on wrong passwords per nickname."""
    return parse(current_app.config["PASSWORD_FAILURE_LIMIT"])


def password_problem(user, password: str | None) -> tuple[str, int] | None:
    """Why this password does not open the nickname, with the status to answer; None if it does.

    Wrong passwords are counted per nickname, so guessing is slow whichever address it comes from.
    """
    if not limiter.limiter.test(_failure_limit(), FAILURE_SCOPE, user.nickname_key):
        return "Too many wrong passwords for this nickname. Please wait a few minutes.", 429
    if not password_matches(user, password):
        limiter.limiter.hit(_failure_limit(), FAILURE_SCOPE, user.nickname_key)
        return "The password is missing or wrong.", 422
    return None


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(configured("LOGIN_RATE_LIMIT"), methods=["POST"])
def login():
    """Log in with a nickname, creating it on first use."""
    target = request.args.get("next")
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(target))
    form = LoginForm()
    if form.validate_on_submit():
        user, created = find_or_create_user(form.nickname.data)
        problem = user.has_password and password_problem(user, form.password.data)
        if problem:
            message, status = problem
            form.password.errors.append(f"This nickname is protected. {message}")
            return render_template("auth/login.html", form=form), status
        if created and form.password.data:
            set_password(user, form.password.data)
        elif form.password.data and not user.has_password:
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
        return redirect(safe_next(target))
    status = 422 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["GET", "POST"])
@login_required
def logout():
    """GET asks for confirmation; POST signs this person out everywhere."""
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
def account():
    """Set or change the password that protects the nickname."""
    form = PasswordForm()
    if form.validate_on_submit():
        problem = current_user.has_password and password_problem(current_user, form.current_password.data)
        if problem:
            form.current_password.errors.append(problem[0])
        else:
            set_password(current_user, form.new_password.data)
            db.session.commit()
            login_user(current_user)  # the token changed: keep this session, drop the others
            session.permanent = True
            flash("Your nickname is now protected by this password.", "success")
            return redirect(url_for("auth.account"))
    status = 422 if form.errors else 200
    return render_template("auth/account.html", form=form), status

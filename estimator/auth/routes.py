"""Login, logout and account views."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import configured, db, limiter
from ..forms import EmptyForm
from ..models import new_token
from . import bp
from .claims import remember_browser, this_browser
from .forms import LoginForm, PasswordForm
from .redirects import safe_next
from .users import LoginRefused, log_in, password_problem, set_password


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
            done = log_in(form.nickname.data or "", form.password.data, browser)
        except LoginRefused as refusal:
            db.session.rollback()
            field = form.password if refusal.field == "password" else form.nickname
            field.errors = [*field.errors, str(refusal)]
            return render_template("auth/login.html", form=form), refusal.status
        db.session.commit()
        session.clear()  # nothing from before the login survives it
        login_user(done.user)
        session.permanent = True
        if done.created:
            flash(_("Welcome, %(nickname)s!", nickname=done.user.nickname), "success")
        else:
            flash(_("Welcome back, %(nickname)s!", nickname=done.user.nickname), "success")
        if done.password_ignored:
            flash(
                _(
                    "This nickname has no password, so the one you typed was not saved. "
                    "You can set one on your account page."
                ),
                "warning",
            )
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
        flash(_("You are logged out."), "info")
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
            flash(_("Your nickname is now protected by this password."), "success")
            return redirect(url_for("auth.account"))
    status = 422 if form.errors else 200
    return render_template("auth/account.html", form=form), status

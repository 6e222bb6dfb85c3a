"""How Flask-Login finds the logged-in user, and what it does with anonymous visitors."""

from __future__ import annotations

import secrets
from typing import NamedTuple

from flask import jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from ..errors import wants_api
from ..extensions import db, login_manager
from ..models import User


class Claim(NamedTuple):
    """Who the session cookie says is logged in: a user id and the session token they got at login
    (it holds only while it is still the user's current token)."""

    user_id: int
    token: str


def parse_claim(value: object) -> Claim | None:
    """The claim in Flask-Login's `<user id>:<session token>`, or None for anything else."""
    user_part, _, token = str(value or "").partition(":")
    if not (user_part.isascii() and user_part.isdigit()) or not token or int(user_part) > 2**31 - 1:
        return None
    return Claim(int(user_part), token)


def session_claim() -> Claim | None:
    """The login this request's session cookie claims, not yet checked against the database."""
    return parse_claim(session.get("_user_id"))


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The user whose id and current session token are in the cookie."""
    claim = parse_claim(user_id)
    if claim is None:
        return None
    user = db.session.get(User, claim.user_id)
    if user is None or not secrets.compare_digest(user.session_token, claim.token):
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized() -> ResponseReturnValue:
    """JSON 401 under /api; elsewhere the login page, coming back here afterwards."""
    if wants_api(request.path):
        return jsonify(error=_("Please log in first.")), 401
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))

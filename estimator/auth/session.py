"""How Flask-Login finds the logged-in user, and what it does with anonymous visitors."""

from __future__ import annotations

import secrets

from flask import jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from ..errors import wants_api
from ..extensions import db, login_manager
from ..models import User


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The user whose id and current session token are in the cookie."""
    user_part, _, token = user_id.partition(":")
    if not user_part.isdigit() or not token:
        return None
    user = db.session.get(User, int(user_part))
    if user is None or not secrets.compare_digest(user.session_token, token):
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized() -> ResponseReturnValue:
    """JSON 401 under /api; elsewhere the login page, coming back here afterwards."""
    if wants_api(request.path):
        return jsonify(error=_("Please log in first.")), 401
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))

"""Nickname login, logout and the account page."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import routes, session  # noqa: E402,F401  (they register themselves on bp and login_manager)

"""Dashboard, groups, invitations and members."""

from flask import Blueprint

bp = Blueprint("groups", __name__)

from . import routes, transfer  # noqa: E402,F401  (routes register themselves on bp)

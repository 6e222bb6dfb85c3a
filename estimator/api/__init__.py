"""JSON state of issues and groups, for live pages and API clients."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import routes  # noqa: E402,F401  (routes register themselves on bp)

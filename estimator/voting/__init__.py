"""Issues: secret estimates, the anonymous reveal, final estimates and re-votes."""

from flask import Blueprint

bp = Blueprint("voting", __name__)

from . import routes  # noqa: E402,F401  (routes register themselves on bp)

"""Health checks for load balancers and orchestrators: is the process alive, can it serve?

A module rather than a blueprint package: two views with no forms or templates.
"""

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from .errors import RETRY_AFTER, outage_cause
from .extensions import db, limiter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers; the database is not asked, so its outage restarts nothing."""
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz() -> ResponseReturnValue:
    """Readiness: the database answers a `SELECT 1`; if not, 503 until it does."""
    try:
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as error:
        current_app.logger.warning(
            "database unavailable: readiness check answered 503 (%s)", outage_cause(error)
        )
        response = jsonify(status="unavailable", error="The database cannot be reached.")
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    return jsonify(status="ok")

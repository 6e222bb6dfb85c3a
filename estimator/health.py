"""Health checks for load balancers and orchestrators: is the process alive, can it serve?

A module rather than a blueprint package: two views with no forms or templates.
"""

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from .errors import RETRY_AFTER, outage_cause
from .extensions import db, limiter
from .instances import registry

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers; the database is not asked, so its outage restarts nothing."""
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz() -> ResponseReturnValue:
    """Readiness: the database answers a `SELECT 1`, and no other running instance of the database
    serves with another secret key or ballot key store; if not, 503 until it holds."""
    try:
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as error:
        current_app.logger.warning(
            "database unavailable: readiness check answered 503 (%s)", outage_cause(error)
        )
        return not_ready("The database cannot be reached.")
    problem = registry().problem()
    if problem is not None:
        current_app.logger.warning("misconfigured: readiness check answered 503 (%s)", problem)
        return not_ready(problem)
    return jsonify(status="ok")


def not_ready(reason: str) -> ResponseReturnValue:
    """503 with the reason, in the status JSON."""
    response = jsonify(status="unavailable", error=reason)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response

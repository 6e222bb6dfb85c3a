"""Error pages: HTML in the site's layout with a way back, JSON under /api."""

import logging
import re
import threading
import time

import sqlalchemy.exc as sa_exc
from flask import Flask, current_app, g, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .changes import N_
from .database import disk_full
from .extensions import db, login_manager
from .instances import ForeignKeyStore
from .sealing import KeyStoreError

# In English here; translated when shown, into the language of the request that meets them.
MESSAGES = {
    400: N_("The request could not be understood."),
    401: N_("Please log in first."),
    403: N_("You are not allowed to do that."),
    404: N_("There is nothing here, or it is not yours to see."),
    405: N_("That action is not available here."),
    409: N_("That conflicts with the current state."),
    413: N_("That was more data than Estimator accepts."),
    429: N_("Too many attempts. Please wait a moment and try again."),
    500: N_("Something went wrong on our side. Nothing was saved; please try again."),
    503: N_(
        "Estimator cannot reach the store that keeps the open votes sealed. Nothing was saved; "
        "please try again in a moment."
    ),
}
CSRF_MESSAGE = N_("The form expired, please try again.")
DATABASE_DOWN_MESSAGE = N_(
    "Estimator cannot reach its database right now. Nothing was saved; please try again in a moment."
)
DATABASE_FULL_MESSAGE = N_(
    "Estimator cannot save anything right now. Nothing was saved; please try again in a moment."
)
DATABASE_BUSY_MESSAGE = N_(
    "Estimator is very busy right now. Nothing was saved; please try again in a moment."
)
#: Seconds a client is asked to wait before trying again when a store is unreachable.
RETRY_AFTER = 5
#: A cause of an outage gets its traceback logged at most this often (seconds); every failed
#: request still gets one line.
TRACEBACK_INTERVAL = 60.0

# PostgreSQL's codes for a lost or refused connection: class 08 (connection exception) and the
# server shutting down, crashed or still starting (57P01-57P03).
CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def wants_api(path: str) -> bool:
    """Whether this request is answered in JSON."""
    return path == "/api" or path.startswith("/api/")


def wants_json() -> bool:
    """Whether the error goes back as JSON: the API, or a page's script that asked for JSON."""
    return wants_api(request.path) or request.accept_mimetypes.best == "application/json"


def error_response(status: int, message: str) -> ResponseReturnValue:
    """One error, as JSON under /api (or when asked for) and as a page everywhere else."""
    if wants_json():
        return jsonify(error=message), status
    return render_template("errors/error.html", status=status, message=message), status


def handle_http_error(error: HTTPException) -> ResponseReturnValue:
    """Any HTTP error with the best message we have for it."""
    status = error.code or 500
    # A description given to abort() is meant for the user; werkzeug's defaults and
    # Flask-Limiter's ("30 per 1 minute") are not.
    described = (
        error.description
        and error.description != type(error).description
        and not isinstance(error, RateLimitExceeded)
    )
    message = str(error.description) if described else _(MESSAGES.get(status, error.name))
    response = make_response(error_response(status, message))
    for name, value in error.get_headers():
        if name == "Retry-After":  # given to a 429 or a 503 that knows when to come back
            response.headers[name] = value
    return response


def handle_csrf_error(_error: CSRFError) -> ResponseReturnValue:
    """A form without a valid token: usually a page from an earlier login."""
    return error_response(400, _(CSRF_MESSAGE))


def rollback() -> None:
    """Undo the request's transaction; with the database gone the rollback itself may fail."""
    try:
        db.session.rollback()
    except sa_exc.SQLAlchemyError:
        # The connection is already lost; dropping the session releases what is left of it.
        db.session.remove()


def unavailable(message: str) -> ResponseReturnValue:
    """A store the app needs is unreachable: nothing is saved, and the client may retry soon."""
    rollback()
    response = make_response(error_response(503, message))
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def handle_key_store_down(_error: KeyStoreError) -> ResponseReturnValue:
    """The ballot key store is unreachable: nothing can be sealed or revealed, so nothing is saved."""
    return unavailable(_(MESSAGES[503]))


def handle_foreign_key_store(_error: ForeignKeyStore) -> ResponseReturnValue:
    """The round's key is held by another server's key store: this server changes nothing (the
    operator was told in the log, and /readyz says so)."""
    return unavailable(
        _(
            "This server cannot open this round's sealed votes: it does not share the ballot key "
            "store of the other servers. Nothing was changed; please try again in a moment."
        )
    )


class TracebackThrottle:
    """Remembers when each cause of an outage last had its traceback logged, so a database that
    is down for an hour fills the log with one line per request, not one traceback each."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()

    def allow(self, cause: str) -> bool:
        """True at most once per interval for one cause."""
        now = time.monotonic()
        with self.lock:
            last = self.last.get(cause)
            if last is not None and now - last < self.interval:
                return False
            self.last[cause] = now
            return True


tracebacks = TracebackThrottle(TRACEBACK_INTERVAL)


def outage_cause(error: sa_exc.DBAPIError) -> str:
    """What went wrong, in one line and without the statement or its parameters: the driver's
    first line of message."""
    original = error.orig if error.orig is not None else error
    first_line = (str(original).strip().splitlines() or [""])[0]
    return f"{type(original).__name__}: {first_line[:200]}"


def is_database_unreachable(error: sa_exc.DBAPIError) -> bool:
    """Whether an error means the database cannot be reached, rather than a fault of the request
    or of ours (a failed constraint, a disk error): no connection could be made (there is no
    statement), the connection was lost, or the server says it is going or not yet there."""
    if isinstance(error, sa_exc.InterfaceError) or error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.OperationalError) and error.statement is None:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(CONNECTION_SQLSTATES)


def handle_database_error(error: sa_exc.DBAPIError) -> ResponseReturnValue:
    """The database is unreachable: a friendly 503 that itself needs no database, and one log line.

    Any other database error is a fault of ours: it goes on to the 500 handler, traceback and all.
    """
    if disk_full(error.orig):
        return handle_database_full(error)
    if not is_database_unreachable(error):
        raise error
    cause = outage_cause(error)
    logger: logging.Logger = current_app.logger
    logger.warning(
        "database unavailable: %s %s answered 503 (%s)",
        request.method,
        request.path,
        cause,
        # Numbers (ports, process ids) vary within one cause, so they are left out of its key.
        exc_info=error if tracebacks.allow(re.sub(r"[0-9]+", "N", cause)) else None,
    )
    # The layout shows who is logged in; loading the user needs the database, so the page is
    # rendered as for a visitor, and nothing asks the database again.
    g._login_user = login_manager.anonymous_user()
    return unavailable(_(DATABASE_DOWN_MESSAGE))


def handle_database_full(error: sa_exc.DBAPIError) -> ResponseReturnValue:
    """The database's disk is full: nothing is saved, what was saved can still be read, and
    writes work again as soon as space is freed. A line in the log says so; a traceback would
    only fill the disk further."""
    current_app.logger.warning(
        "database full: %s %s answered 503 (%s)", request.method, request.path, outage_cause(error)
    )
    g._login_user = login_manager.anonymous_user()  # as for an outage: nothing asks the database again
    return unavailable(_(DATABASE_FULL_MESSAGE))


def handle_database_busy(error: sa_exc.TimeoutError) -> ResponseReturnValue:
    """Every connection of this worker's pool stayed busy for as long as a request waits for one:
    the worker is overloaded. Nothing is saved, and the client may retry soon."""
    current_app.logger.warning(
        "database busy: %s %s answered 503 (%s)", request.method, request.path, f"{error}".partition("\n")[0]
    )
    g._login_user = login_manager.anonymous_user()  # as for an outage: nothing asks the pool again
    return unavailable(_(DATABASE_BUSY_MESSAGE))


def end_session(_error: BaseException | None) -> None:
    """Release the request's database session at its end. A connection that died after the answer
    was made (a page rendered, a vote committed) must not turn that answer into a bare 500."""
    try:
        db.session.remove()
    except sa_exc.DBAPIError as error:
        if not is_database_unreachable(error):
            raise
        current_app.logger.warning(
            "database unavailable: connection lost after %s %s was answered (%s)",
            request.method,
            request.path,
            outage_cause(error),
        )


def handle_unexpected(_error: InternalServerError) -> ResponseReturnValue:
    """Anything unforeseen: roll back so nothing half-done is saved, and say so kindly."""
    rollback()
    return error_response(500, _(MESSAGES[500]))


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on the app."""
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(KeyStoreError, handle_key_store_down)
    app.register_error_handler(ForeignKeyStore, handle_foreign_key_store)
    app.register_error_handler(sa_exc.DBAPIError, handle_database_error)
    app.register_error_handler(sa_exc.TimeoutError, handle_database_busy)
    app.register_error_handler(HTTPException, handle_http_error)
    # Flask hands every unhandled exception to the 500 handler (tests still see the traceback).
    app.register_error_handler(InternalServerError, handle_unexpected)
    # A request's teardown runs before Flask-SQLAlchemy's, which then finds nothing left to release.
    app.teardown_request(end_session)

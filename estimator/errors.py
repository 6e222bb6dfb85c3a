"""Error pages: HTML in the site's layout with a way back, JSON under /api."""

from flask import Flask, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .extensions import db
from .sealing import KeyStoreError

MESSAGES = {
    400: "The request could not be understood.",
    401: "Please log in first.",
    403: "You are not allowed to do that.",
    404: "There is nothing here, or it is not yours to see.",
    405: "That action is not available here.",
    409: "That conflicts with the current state.",
    413: "That was more data than Estimator accepts.",
    429: "Too many attempts. Please wait a moment and try again.",
    500: "Something went wrong on our side. Nothing was saved; please try again.",
    503: "Estimator cannot reach the store that keeps the open votes sealed. Nothing was saved; "
    "please try again in a moment.",
}
CSRF_MESSAGE = "The form expired, please try again."


def wants_api(path: str) -> bool:
    """Whether this request is answered in JSON."""
    return path == "/api" or path.startswith("/api/")


def error_response(status: int, message: str) -> ResponseReturnValue:
    """One error, as JSON under /api and as a page everywhere else."""
    if wants_api(request.path):
        return jsonify(error=message), status
    return render_template("errors/error.html", status=status, message=message), status


def handle_http_error(error: HTTPException) -> ResponseReturnValue:
    """Any HTTP error with the best message we have for it."""
    status = error.code or 500
    # A description given to abort() is meant for the user; werkzeug's defaults and
    # Flask-Limiter's ("30 per 1 minute") are not.
    described = error.description and error.description != type(error).description and status != 429
    message = str(error.description) if described else MESSAGES.get(status, error.name)
    return error_response(status, message)


def handle_csrf_error(_error: CSRFError) -> ResponseReturnValue:
    """A form without a valid token: usually a page from an earlier login."""
    return error_response(400, CSRF_MESSAGE)


def handle_key_store_down(_error: KeyStoreError) -> ResponseReturnValue:
    """The ballot key store is unreachable: nothing can be sealed or revealed, so nothing is saved."""
    db.session.rollback()
    response = make_response(error_response(503, MESSAGES[503]))
    response.headers["Retry-After"] = "5"
    return response


def handle_unexpected(_error: InternalServerError) -> ResponseReturnValue:
    """Anything unforeseen: roll back so nothing half-done is saved, and say so kindly."""
    db.session.rollback()
    return error_response(500, MESSAGES[500])


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on the app."""
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(KeyStoreError, handle_key_store_down)
    app.register_error_handler(HTTPException, handle_http_error)
    # Flask hands every unhandled exception to the 500 handler (tests still see the traceback).
    app.register_error_handler(InternalServerError, handle_unexpected)

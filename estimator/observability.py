"""Logs that can be followed request by request, and Prometheus metrics at /metrics.

Every request carries a request id: the caller's `X-Request-ID` when it is a sane token, else a
fresh random one. It is sent back in the response and stamped on every log line written while the
request runs, so one line of a user's report finds all the others.

Nothing here reads a request's body or form: a vote's card travels in the body, and no log line or
metric label may ever hold one (docs/anonymity.md).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, abort, has_request_context, request
from flask.logging import default_handler
from gunicorn.glogging import Logger
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_flask_exporter import PrometheusMetrics  # type: ignore[import-untyped]  # ships no type hints
from prometheus_flask_exporter.multiprocess import (  # type: ignore[import-untyped]  # ships no type hints
    GunicornPrometheusMetrics,
)
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# Where the request id is kept for the request: in the WSGI environ, so gunicorn's access log (which
# runs after the app has answered) and any middleware can read it too.
REQUEST_ID_ENVIRON_KEY = "estimator.request_id"
# A caller's id is taken only when it cannot smuggle anything into a log line or a header.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

LOG_FORMATS = ("text", "json")
#: The name of the handler this module puts on the app's logger, so a second app replaces it.
LOG_HANDLER_NAME = "estimator.observability"
TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s [%(request_id)s] %(message)s"
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")
#: gunicorn's access-log atoms lifted into fields of their own in JSON lines. The path is without its
#: query string; the full request line stays in the message.
ACCESS_FIELDS = {"method": "m", "path": "U", "status": "s", "bytes": "B", "duration_ms": "M"}

#: What the request-count and latency metrics are labelled with: the Flask endpoint, never the path.
UNMATCHED_ENDPOINT = "unmatched"


def register_observability(app: Flask) -> None:
    """Request ids, log format and the /metrics route."""
    register_request_id(app)
    configure_logging(app)
    register_metrics(app)


# Request ids ---------------------------------------------------------------------------------------


def request_id() -> str | None:
    """The current request's id (chosen on first use), or None outside a request."""
    if not has_request_context():
        return None
    environ = request.environ
    chosen = environ.get(REQUEST_ID_ENVIRON_KEY)
    if chosen is None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        chosen = offered if SANE_REQUEST_ID.fullmatch(offered) else secrets.token_hex(16)
        environ[REQUEST_ID_ENVIRON_KEY] = chosen
    return str(chosen)


def register_request_id(app: Flask) -> None:
    """Give every request an id and send it back as `X-Request-ID`."""

    @app.before_request
    def choose_request_id() -> None:
        request_id()

    @app.after_request
    def send_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = request_id() or ""
        return response


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it was logged in (`-` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id() or "-"
        return True


class GunicornAccessFilter(logging.Filter):
    """Lifts the request id and the main facts of gunicorn's access-log line into fields of their own.

    gunicorn logs an access line with its atoms as the record's arguments; the request id is the
    `X-Request-ID` the app sent back.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, Mapping):
            record.request_id = str(atoms.get("{x-request-id}o", "-"))
            for field, atom in ACCESS_FIELDS.items():
                if atom in atoms:
                    setattr(record, field, atoms[atom])
        return True


# Logs ----------------------------------------------------------------------------------------------


def json_formatter() -> logging.Formatter:
    """One JSON object per line: timestamp, level, logger, message, request id (and any extras)."""
    return JsonFormatter(
        ["levelname", "name", "message", "request_id"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


def log_formatter(log_format: str) -> logging.Formatter:
    """The formatter for LOG_FORMAT."""
    return json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(app: Flask) -> None:
    """Send the app's log lines, and in JSON mode gunicorn's, in the format LOG_FORMAT names."""
    log_format = str(app.config.get("LOG_FORMAT") or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    logger = app.logger
    for handler in list(logger.handlers):
        # Flask's default handler, or ours from an earlier app of this process: replaced.
        if handler is default_handler or handler.get_name() == LOG_HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.set_name(LOG_HANDLER_NAME)
    handler.setFormatter(log_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.DEBUG if app.debug else logging.INFO)
    if log_format == "json":
        format_gunicorn_logs()


def format_gunicorn_logs() -> None:
    """Turn the log lines of the gunicorn worker this app runs in into JSON.

    Harmless outside gunicorn: its loggers then have no handlers. The master process's own lines
    (starting and stopping workers) follow when gunicorn runs with `--logger-class
    estimator.observability.GunicornJsonLogger`.
    """
    for name in GUNICORN_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(json_formatter())
            if not any(isinstance(f, GunicornAccessFilter | RequestIdFilter) for f in handler.filters):
                handler.addFilter(GunicornAccessFilter() if name.endswith("access") else RequestIdFilter())


class GunicornJsonLogger(Logger):
    """gunicorn's logger writing JSON lines, the master's own included (`--logger-class`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        format_gunicorn_logs()
        # Python's warnings (a library's, or gevent's as a worker starts) are JSON lines too.
        logging.captureWarnings(True)
        warnings_log = logging.getLogger("py.warnings")
        warnings_log.handlers = list(self.error_log.handlers)
        warnings_log.propagate = False


# Metrics -------------------------------------------------------------------------------------------


def endpoint(req: Any) -> str:
    """The label of a request in the metrics: its Flask endpoint, never the path with its ids."""
    return str(req.endpoint or UNMATCHED_ENDPOINT)


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR: where gunicorn's workers share their metrics, or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def make_exporter(app: Flask) -> Any:
    """The exporter's request counts and latencies for this app, by endpoint, method and status.

    Under gunicorn with PROMETHEUS_MULTIPROC_DIR the workers write their counts to files there and
    /metrics adds them up; otherwise the counts live in this process, in a registry of this app.
    """
    options: dict[str, Any] = {"group_by": endpoint, "path": None}
    if multiprocess_dir():
        return GunicornPrometheusMetrics(app, **options)
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return PrometheusMetrics(app, registry=registry, **options)


def register_metrics(app: Flask) -> None:
    """`GET /metrics` for Prometheus, answering 404 unless METRICS_ENABLED is set."""
    exporter = make_exporter(app) if app.config.get("METRICS_ENABLED") else None

    @PrometheusMetrics.do_not_track()  # a scrape is not a request of the app's users
    def metrics() -> Response:
        """The metrics in Prometheus's text format; the route exists even when they are off."""
        if exporter is None:
            abort(404)
        body, content_type = exporter.generate_metrics(request.headers.get("Accept"))
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics, methods=["GET"])


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """gunicorn's `child_exit` hook: a dead worker's live gauges leave the shared metrics."""
    if multiprocess_dir():
        GunicornPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)

"""`GET /api/issues/<id>` and `GET /api/groups/<id>`, with ETags so polling costs next to nothing.

Every change a member could see bumps the group's version (see database.bump_version), so the
version is in the ETag. Most polls never reach these views: live.FastPolls answers an unchanged
poll, and one whose JSON this process built already, before Flask runs.

Each view is described in the OpenAPI document (`GET /api/openapi.json`) by `documented`.
"""

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Response, abort, current_app, jsonify, request
from flask_login import current_user, login_required

from .. import cooperative
from ..extensions import db
from ..groups.state import group_state, load_group
from ..live import (
    JsonCache,
    Seen,
    board,
    etag,
    json_cache,
    key_fingerprint,
    login_key,
    read_seen,
    tag_matches,
)
from ..models import Membership
from ..voting.state import issue_state, load_issue
from . import bp
from .openapi import documented, openapi_document
from .schemas import GroupStatus, IssueStatus, OpenAPIDocument

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A Last-Event-ID this app could have sent: a version (ASCII digits; str.isdigit takes "²" too).
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")


def member_seen(kind: str, object_id: int) -> Seen:
    """The group of the issue or group `object_id` as the current user sees it; 404 unless they
    are one of its members (or it does not exist): one query, whatever the answer."""
    seen = read_seen(db.session.connection(), kind, object_id, current_user.id)
    if seen is None:
        abort(404)
    return seen


def found(thing: T | None) -> T:
    """The object, or 404 when it went away since its version was read."""
    if thing is None:
        abort(404)
    return thing


def conditional_json(kind: str, object_id: int, build: Callable[[], dict[str, Any]]) -> Response:
    """304 when the client has this version; else the JSON that build() makes, built once per
    version and process (it is the same for every member). Polls that find the JSON built are
    answered before Flask runs (live.FastPolls); this is the way there."""
    seen = member_seen(kind, object_id)
    fingerprint = key_fingerprint(seen.key_ids)
    tag = etag(kind, object_id, seen.group_id, seen.version, fingerprint)
    if tag_matches(tag, request.headers.get("If-None-Match", "")):
        response = current_app.response_class(status=304)
    else:
        body = json_cache(current_app).get(JsonCache.key(kind, object_id, seen, fingerprint), build)
        response = current_app.response_class(body, mimetype="application/json")
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.route("/issues/<id:issue_id>")
@login_required
@documented("getIssue", IssueStatus)
def issue(issue_id: int) -> Response:
    """The issue's status: voters (never their cards), progress, result and history."""
    return conditional_json("issue", issue_id, lambda: issue_state(found(load_issue(issue_id))))


@bp.route("/groups/<id:group_id>")
@login_required
@documented("getGroup", GroupStatus)
def group(group_id: int) -> Response:
    """The group: members with roles, issues with state and progress."""
    return conditional_json("group", group_id, lambda: group_state(found(load_group(group_id))))


@bp.route("/groups/<id:group_id>/events")
@login_required
@documented(
    "getGroupEvents",
    'Server-sent events: `id: <version>`, `event: version`, `data: {"version": <version>}` '
    "whenever the group changes; a comment line at least every 25 seconds. With Last-Event-ID "
    "older than the current version, the current version is sent at once.",
    conditional=False,
    no_content="The server's workers cannot hold event streams open (gunicorn's sync or gthread "
    "workers, or a WSGI server without gevent): answered at once, without a body, so that "
    "EventSource closes instead of reconnecting. Poll the group's or issue's state with "
    "If-None-Match instead.",
)
def events(group_id: int) -> Response:
    """Server-sent events: the group's version whenever it changes, a comment when quiet; 204
    where this worker cannot hold a stream."""
    exists = db.session.scalar(
        sa.select(Membership.group_id).where(
            Membership.group_id == group_id, Membership.user_id == current_user.id
        )
    )
    if exists is None:
        abort(404)
    if not cooperative():
        # A sync or threaded worker would be held by the stream for as long as the page is open:
        # a few pages would take every worker. The page polls instead.
        say_pages_poll(request.environ)
        response = current_app.response_class(status=204)
        response.headers["Cache-Control"] = "no-store"
        return response
    last_seen = request.headers.get("Last-Event-ID", "").strip()
    login = login_key()
    db.session.close()  # the stream holds no database connection while it waits
    try:
        stream = board().listen(
            group_id,
            login,
            int(last_seen) if LAST_EVENT_ID.fullmatch(last_seen) else None,
            current_app.config["LIVE_STREAM_SECONDS"],
            current_app.config["LIVE_HEARTBEAT_SECONDS"],
        )
    except LookupError:
        abort(404)
    response = current_app.response_class(stream, mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


#: The process that said its pages poll (a worker forked from one that said so says it too).
_said_in_process: int | None = None
_saying = threading.Lock()


def say_pages_poll(environ: Mapping[str, Any]) -> None:
    """Log once per process that its event streams answer 204, and why."""
    global _said_in_process
    with _saying:
        if _said_in_process == os.getpid():
            return
        _said_in_process = os.getpid()
    log.warning(
        "Live updates: this worker cannot hold event streams (%s); pages poll instead. "
        "Run gevent workers (gunicorn.conf.py does) to push changes.",
        server_kind(environ),
    )


def server_kind(environ: Mapping[str, Any]) -> str:
    """What serves this request, in a few words: gunicorn's worker kind, or the server's name."""
    software = str(environ.get("SERVER_SOFTWARE") or "")
    if software.startswith("gunicorn"):
        return "gthread worker" if environ.get("wsgi.multithread") else "sync worker"
    return f"{software or 'this WSGI server'}, without gevent"


@bp.route("/openapi.json")
@documented("getOpenApiDocument", OpenAPIDocument, conditional=False, public=True)
def openapi() -> Response:
    """This OpenAPI document: public, as it describes the API and holds no data."""
    return jsonify(openapi_document())

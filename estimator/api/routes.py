"""`GET /api/issues/<id>` and `GET /api/groups/<id>`, with ETags so polling costs next to nothing.

Every change a member could see bumps the group's version (see database.bump_version), so the
version is in the ETag. Most polls never reach these views: live.FastPolls answers an unchanged
poll, and one whose JSON this process built already, before Flask runs.

Each view is described in the OpenAPI document (`GET /api/openapi.json`) by `documented`.
"""

import re
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Response, abort, current_app, jsonify, request
from flask_login import current_user, login_required

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
)
def events(group_id: int) -> Response:
    """Server-sent events: the group's version whenever it changes, a comment when quiet."""
    exists = db.session.scalar(
        sa.select(Membership.group_id).where(
            Membership.group_id == group_id, Membership.user_id == current_user.id
        )
    )
    if exists is None:
        abort(404)
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


@bp.route("/openapi.json")
@documented("getOpenApiDocument", OpenAPIDocument, conditional=False, public=True)
def openapi() -> Response:
    """This OpenAPI document: public, as it describes the API and holds no data."""
    return jsonify(openapi_document())

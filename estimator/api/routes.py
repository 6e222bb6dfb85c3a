"""The JSON API: the states of issues and groups (with ETags), the group's events, a view's regions.

Each view is described in the OpenAPI document (`GET /api/openapi.json`) by `documented`.
"""

import re
from typing import TypeVar

from flask import Response, abort, jsonify, request
from flask_login import current_user, login_required

from .. import live
from ..groups.state import group_state, load_group
from ..voting.state import issue_state, load_issue
from . import bp
from .openapi import documented, openapi_document
from .schemas import EventsQuery, GroupStatus, IssueStatus, OpenAPIDocument, Regions, RegionsQuery

T = TypeVar("T")
#: A Last-Event-ID this app could have sent: a version (ASCII digits; str.isdigit takes "²" too).
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")


def found(thing: T | None) -> T:
    """The object, or 404 when it went away since its version was read."""
    if thing is None:
        abort(404)
    return thing


@bp.route("/issues/<id:issue_id>")
@login_required
@documented("getIssue", IssueStatus)
def issue(issue_id: int) -> Response:
    """The issue's status: voters (never their cards), progress, result and history."""
    seen = live.member_sees(current_user.id, issue_id=issue_id)
    if seen is None:
        abort(404)
    return live.json_state("issue", issue_id, seen, lambda: issue_state(found(load_issue(issue_id))))


@bp.route("/groups/<id:group_id>")
@login_required
@documented("getGroup", GroupStatus)
def group(group_id: int) -> Response:
    """The group: members with roles, issues with state and progress."""
    seen = live.member_sees(current_user.id, group_id)
    if seen is None:
        abort(404)
    return live.json_state("group", group_id, seen, lambda: group_state(found(load_group(group_id))))


def last_seen() -> int | None:
    """The version the listener has seen: the browser's Last-Event-ID on a reconnection (ignored
    when it is no version of ours), else the page's own `since` (400 when it is no version)."""
    offered = request.headers.get("Last-Event-ID", "").strip()
    if LAST_EVENT_ID.fullmatch(offered):
        return int(offered)
    since = request.args.get("since")
    if since is None:
        return None
    if not LAST_EVENT_ID.fullmatch(since):
        abort(400, "`since` is the version a page shows: a whole number.")
    return int(since)


@bp.route("/groups/<id:group_id>/events")
@login_required
@documented(
    "getGroupEvents",
    'Server-sent events: `id: <version>`, `event: version`, `data: {"version": <version>}` '
    "whenever the group changes; a comment line at least every 25 seconds. With Last-Event-ID "
    "(or `since`) older than the current version, the current version is sent at once. With "
    "`view` (`room`, `group`, `group-<page>`, `issue-<id>`: what a page shows), each version event "
    'is preceded by `event: regions`, `data: {"version", "title", "regions": {id: html}}`: the '
    "view's regions that changed, as the listener sees them. A worker that cannot hold streams "
    "answers 204, and pages poll `/api/groups/<id>/regions` instead.",
    conditional=False,
    query=EventsQuery,
    no_content="The server's workers cannot hold event streams open (gunicorn's sync or gthread "
    "workers, or a WSGI server without gevent): answered at once, without a body, so that "
    "EventSource closes instead of reconnecting. Poll the view's regions (or the group's or "
    "issue's state) with If-None-Match instead.",
    too_many="This person (LIVE_STREAMS_PER_LOGIN, 20 by default) or this client address "
    "(LIVE_STREAMS_PER_ADDRESS, 500) holds as many streams in this server process as it may; "
    "answered at once, with Retry-After. Poll the view's regions meanwhile.",
)
def events(group_id: int) -> Response:
    """Server-sent events: the group's version whenever it changes, a comment when quiet."""
    return live.events_response(group_id, request.args.get("view"), last_seen())


@bp.route("/groups/<id:group_id>/regions")
@login_required
@documented("getGroupRegions", Regions, query=RegionsQuery)
def regions(group_id: int) -> Response:
    """A live page's regions (`view` as for the events) as the member sees them now: what a page
    polls when it cannot hold an event stream."""
    return live.regions_response(group_id, request.args.get("view", ""))


@bp.route("/openapi.json")
@documented("getOpenApiDocument", OpenAPIDocument, conditional=False, public=True)
def openapi() -> Response:
    """This OpenAPI document: public, as it describes the API and holds no data."""
    return jsonify(openapi_document())

"""`GET /api/issues/<id>` and `GET /api/groups/<id>`, with ETags so polling costs next to nothing.

Every change a member could see bumps the group's version (see database.lock_group), so the
version is the ETag: a poll whose If-None-Match still matches is answered with 304 after one
query that checks membership and reads the version together.

Each view is described in the OpenAPI document (`GET /api/openapi.json`) by `documented`.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Response, abort, current_app, jsonify, request
from flask_login import current_user, login_required

from ..extensions import db
from ..groups.state import group_state, load_group
from ..live import etag
from ..models import Group, Issue, Membership
from ..voting.state import issue_state, load_issue
from . import bp
from .openapi import documented, openapi_document
from .schemas import GroupStatus, IssueStatus, OpenAPIDocument

T = TypeVar("T")


def member_version(*where: sa.ColumnElement[bool]) -> int:
    """The version of the group matching `where` if the current user belongs to it, else 404."""
    version = db.session.scalar(
        sa.select(Group.version)
        .join(Membership, Membership.group_id == Group.id)
        .where(Membership.user_id == current_user.id, *where)
    )
    if version is None:
        abort(404)
    return int(version)


def found(thing: T | None) -> T:
    """The object, or 404 when it went away since its version was read."""
    if thing is None:
        abort(404)
    return thing


def conditional_json(tag: str, build: Callable[[], dict[str, Any]]) -> Response:
    """304 when the client has this version; else the JSON that build() makes."""
    if tag in request.if_none_match:
        response = current_app.response_class(status=304)
    else:
        response = jsonify(build())
    response.set_etag(tag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.route("/issues/<id:issue_id>")
@login_required
@documented("getIssue", IssueStatus)
def issue(issue_id: int) -> Response:
    """The issue's status: voters (never their cards), progress, result and history."""
    version = member_version(Issue.id == issue_id, Issue.group_id == Group.id)
    return conditional_json(
        etag("issue", issue_id, version), lambda: issue_state(found(load_issue(issue_id)))
    )


@bp.route("/groups/<id:group_id>")
@login_required
@documented("getGroup", GroupStatus)
def group(group_id: int) -> Response:
    """The group: members with roles, issues with state and progress."""
    version = member_version(Group.id == group_id)
    return conditional_json(
        etag("group", group_id, version), lambda: group_state(found(load_group(group_id)))
    )


@bp.route("/openapi.json")
@documented("getOpenApiDocument", OpenAPIDocument, conditional=False, public=True)
def openapi() -> Response:
    """This OpenAPI document: public, as it describes the API and holds no data."""
    return jsonify(openapi_document())

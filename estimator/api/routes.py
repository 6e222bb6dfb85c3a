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
from ..models import Group, Issue, Membership, Round
from ..voting.state import issue_state, load_issue
from . import bp
from .openapi import documented, openapi_document
from .schemas import GroupStatus, IssueStatus, OpenAPIDocument

T = TypeVar("T")


def member_version(group: sa.ColumnElement[bool], rounds: sa.ColumnElement[bool]) -> tuple[int, set[str]]:
    """The version of the group matching `group` if the current user belongs to it (else 404), and
    the ballot key ids of the open rounds matching `rounds`: one query, whatever the answer."""
    rows = db.session.execute(
        sa.select(Group.version, Round.key_id)
        .join(Membership, Membership.group_id == Group.id)
        .outerjoin(Round, sa.and_(Round.key_id.is_not(None), rounds))
        .where(Membership.user_id == current_user.id, group)
    ).all()
    if not rows:
        abort(404)
    return int(rows[0].version), {row.key_id for row in rows if row.key_id}


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
    of_issue = sa.select(Issue.group_id).where(Issue.id == issue_id).scalar_subquery()
    version, key_ids = member_version(Group.id == of_issue, Round.issue_id == issue_id)
    return conditional_json(
        etag("issue", issue_id, version, key_ids),
        lambda: issue_state(found(load_issue(issue_id))),
    )


@bp.route("/groups/<id:group_id>")
@login_required
@documented("getGroup", GroupStatus)
def group(group_id: int) -> Response:
    """The group: members with roles, issues with state and progress."""
    issues = sa.select(Issue.id).where(Issue.group_id == group_id)
    version, key_ids = member_version(Group.id == group_id, Round.issue_id.in_(issues))
    return conditional_json(
        etag("group", group_id, version, key_ids),
        lambda: group_state(found(load_group(group_id))),
    )


@bp.route("/openapi.json")
@documented("getOpenApiDocument", OpenAPIDocument, conditional=False, public=True)
def openapi() -> Response:
    """This OpenAPI document: public, as it describes the API and holds no data."""
    return jsonify(openapi_document())

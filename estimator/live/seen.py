"""What a member sees of a group: the one query every live answer starts from, and its entity tag."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app, session
from werkzeug.http import parse_etags, unquote_etag

from ..database import in_group
from ..extensions import db
from ..models import Group, Issue, Membership, Round
from ..sealing import ballot_keys


class Seen(NamedTuple):
    """A group as one of its members sees it: its identity, version, the member's role, and the
    ballot key ids of the open rounds of what was asked for (an issue, or the whole group)."""

    group_id: int
    created_at: datetime
    version: int
    role: str
    key_ids: frozenset[str]
    #: Which of those keys the key store still holds, in a short name (asked once per Seen): losing
    #: one changes what pages show without changing the version.
    fingerprint: str


def key_fingerprint(key_ids: Collection[str]) -> str:
    """Which of these ballot keys the app's key store still holds, in a short name."""
    return ballot_keys.fingerprint(key_ids, current_app.extensions["ballot_keys"])


def member_sees(user_id: int, group_id: int | None = None, issue_id: int | None = None) -> Seen | None:
    """The group (or its issue `issue_id`; the group may then be left out) as user `user_id` sees
    it; None when it does not exist or they are not a member of it. One indexed query, whatever the
    answer."""
    dialect = db.session.get_bind().dialect.name
    statement = (
        sa.select(Group.id, Group.created_at, Group.version, Membership.role, Round.key_id)
        .select_from(Membership)
        .join(Group, Group.id == Membership.group_id)
        .where(Membership.user_id == user_id)
    )
    if group_id is not None:
        statement = statement.where(Group.id == group_id)
    if issue_id is not None:
        statement = statement.join(
            Issue, sa.and_(Issue.group_id == Group.id, Issue.id == issue_id)
        ).outerjoin(Round, sa.and_(Round.issue_id == Issue.id, Round.key_id.is_not(None)))
    else:
        statement = statement.outerjoin(
            Round, sa.and_(Round.key_id.is_not(None), in_group(Group.id, dialect))
        )
    rows = db.session.execute(statement).all()
    if not rows:
        return None
    group, created_at, version, role, _key = rows[0]
    key_ids = frozenset(row[4] for row in rows if row[4])
    return Seen(group, created_at, int(version), str(role), key_ids, key_fingerprint(key_ids))


def etag(name: str, seen: Seen) -> str:
    """The entity tag (quoted) of `name` (what is served: a JSON state, a view's regions) as this
    login sees it: it names the group's version and its keys' fingerprint, and is signed for the
    login (user id and session token), so that a tag from before a logout never matches."""
    body = f"{name}-g{seen.group_id}-v{seen.version}-{seen.role}-k{seen.fingerprint}"
    login = str(session.get("_user_id") or "")
    secret = str(current_app.config["SECRET_KEY"]).encode()
    mac = hmac.new(secret, f"{login}|{body}".encode(), hashlib.sha256).hexdigest()[:20]
    return f'"{body}-{mac}"'


def tag_matches(tag: str, if_none_match: str) -> bool:
    """Whether an If-None-Match header names this (quoted) entity tag, weakly or strongly."""
    return bool(if_none_match) and parse_etags(if_none_match).contains_weak(unquote_etag(tag)[0])

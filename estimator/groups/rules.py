"""What can happen to a group: creation, joining, issues, members, the invite link."""

from __future__ import annotations

import re

import sqlalchemy as sa

from ..changes import RuleError
from ..database import insert_unless_exists, lock_group
from ..extensions import db
from ..models import Ballot, Group, Issue, IssueState, Membership, Role, Round, User, new_token

INVITE_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what new_token() makes, URL-safe base64


class GroupError(RuleError):
    """A change to a group that its rules refuse."""


def create_group(owner: User, name: str, deck: str) -> Group:
    """A new group owned (and facilitated) by owner."""
    group = Group(name=name, deck=deck, owner=owner)
    group.memberships.append(Membership(user=owner, role=Role.OWNER))
    db.session.add(group)
    db.session.flush()
    return group


def group_by_invite(token: str) -> Group | None:
    """The group whose current invite link carries this token (None for anything malformed)."""
    if not INVITE_TOKEN.fullmatch(token):
        return None
    return db.session.scalar(sa.select(Group).where(Group.invite_token == token))


def join_group(group: Group, user: User, role: str) -> bool:
    """Add user to the group; False when they already were a member (also under a race)."""
    lock_group(group.id)
    return insert_unless_exists(
        Membership,
        {"group_id": group.id, "user_id": user.id, "role": role},
        unique=["group_id", "user_id"],
    )


def add_issue(group: Group, key: str, description: str) -> Issue:
    """A new issue with its first round open for voting; GroupError when the key is taken."""
    lock_group(group.id)
    # Compared in Python: SQLite's lower() folds ASCII only, and "Ä-1" and "ä-1" are one key.
    keys = db.session.scalars(sa.select(Issue.key).where(Issue.group_id == group.id))
    if key.casefold() in {existing.casefold() for existing in keys}:
        raise GroupError(f"The group already has an issue {key}.")
    issue = Issue(group_id=group.id, key=key, description=description, state=IssueState.VOTING)
    issue.rounds.append(Round(number=1))
    db.session.add(issue)
    db.session.flush()
    return issue


def _drop_open_ballots(group_id: int, user_id: int) -> None:
    """Forget a person's ballots in the group's unrevealed rounds (they no longer vote)."""
    open_rounds = (
        sa.select(Round.id).join(Issue).where(Issue.group_id == group_id, Round.revealed_at.is_(None))
    )
    db.session.execute(sa.delete(Ballot).where(Ballot.user_id == user_id, Ballot.round_id.in_(open_rounds)))


def _member(group: Group, user_id: int) -> Membership:
    membership = db.session.scalar(
        sa.select(Membership).where(Membership.group_id == group.id, Membership.user_id == user_id)
    )
    if membership is None:
        raise GroupError("That person is not a member of this group.")
    if membership.is_owner:
        raise GroupError("The facilitator's own role cannot be changed.")
    return membership


def set_role(group: Group, user_id: int, role: str) -> Membership:
    """Make a member an observer or back; an observer's open ballots are dropped."""
    lock_group(group.id)
    membership = _member(group, user_id)
    membership.role = role
    if role == Role.OBSERVER:
        _drop_open_ballots(group.id, user_id)
    return membership


def remove_member(group: Group, user_id: int) -> str:
    """Remove a member with their unrevealed ballots; returns their nickname."""
    lock_group(group.id)
    membership = _member(group, user_id)
    nickname = membership.user.nickname
    _drop_open_ballots(group.id, user_id)
    db.session.delete(membership)
    return nickname


def new_invite(group: Group) -> None:
    """Replace the invite link; the old one stops working at once."""
    lock_group(group.id)
    group.invite_token = new_token()

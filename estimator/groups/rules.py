"""What can happen to a group: creation, joining, issues, members, the invite link."""

from __future__ import annotations

import re

import sqlalchemy as sa

from ..changes import RuleError
from ..database import change_group, insert_unless_exists
from ..extensions import db
from ..models import Group, Issue, IssueState, Membership, Role, Round, User, new_token

INVITE_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what new_token() makes, URL-safe base64


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


def join_group(group: Group, user: User, role: str) -> None:
    """Add user to the group; AlreadyMember when they already were one (also under a race)."""
    change_group(group.id)
    joined = insert_unless_exists(
        Membership,
        {"group_id": group.id, "user_id": user.id, "role": role},
        unique=["group_id", "user_id"],
    )
    if not joined:
        raise RuleError(f"You are already a member of “{group.name}”.")


def add_issue(group: Group, key: str, description: str) -> Issue:
    """A new issue with its first round open for voting; RuleError when the key is taken."""
    change_group(group.id)
    # Compared in Python: SQLite's lower() folds ASCII only, and "Ä-1" and "ä-1" are one key.
    keys = db.session.scalars(sa.select(Issue.key).where(Issue.group_id == group.id))
    if key.casefold() in {existing.casefold() for existing in keys}:
        raise RuleError(f"The group already has an issue {key}.")
    issue = Issue(group_id=group.id, key=key, description=description, state=IssueState.VOTING)
    issue.rounds.append(Round(number=1))
    db.session.add(issue)
    db.session.flush()
    return issue


def _member(group: Group, user_id: int) -> Membership:
    membership: Membership | None = db.session.scalar(
        sa.select(Membership).where(Membership.group_id == group.id, Membership.user_id == user_id)
    )
    if membership is None:
        raise RuleError("That person is not a member of this group.")
    if membership.is_owner:
        raise RuleError("The facilitator's own role cannot be changed.")
    return membership


def set_role(group: Group, user_id: int, role: str) -> Membership:
    """Make a member an observer or back; it applies from the next round: open ballots stay."""
    change_group(group.id)
    membership = _member(group, user_id)
    membership.role = role
    return membership


def remove_member(group: Group, user_id: int) -> str:
    """Remove a member; their open ballots stay in the open rounds (they belong to their voter)."""
    change_group(group.id)
    membership = _member(group, user_id)
    nickname = membership.user.nickname
    db.session.delete(membership)
    return nickname


def new_invite(group: Group) -> None:
    """Replace the invite link; the old one stops working at once."""
    change_group(group.id)
    group.invite_token = new_token()


def change_settings(group: Group, *, auto_reveal: bool, min_votes: int, facilitator_votes: bool) -> None:
    """Change how the group votes (the form bounds min_votes to 1..MIN_VOTES_MAX).

    Open ballots stay whatever changes: a facilitator who stops voting keeps the card already
    cast, and an open round keeps the threshold its first vote was cast under.
    """
    change_group(group.id)
    group.auto_reveal, group.min_votes, group.facilitator_votes = auto_reveal, min_votes, facilitator_votes

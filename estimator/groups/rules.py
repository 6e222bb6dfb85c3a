"""What can happen to a group: creation, joining, issues, members, the invite link."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..changes import RuleError
from ..database import change_group, insert_unless_exists
from ..estimates import CUSTOM
from ..extensions import db
from ..models import Ballot, Group, Issue, IssueState, Membership, Role, Round, User, new_token
from ..sealing import ballot_keys
from ..text import has_forbidden_characters, has_lone_marks, looks

INVITE_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what new_token() makes, URL-safe base64


#: The limits of one group and one person (the group page stays fast at them).
MAX_ISSUES, MAX_MEMBERS, MAX_OWNED_GROUPS = 1000, 200, 100
OWNER_CANNOT_LEAVE = _l("The facilitator cannot leave: hand the group over to a member first, or delete it.")


def create_group(owner: User, name: str, deck: str, cards: tuple[str, ...] = ()) -> Group:
    """A new group owned (and facilitated) by owner; `cards` are a custom deck's labels."""
    owned = db.session.scalar(sa.select(sa.func.count()).select_from(Group).where(Group.owner_id == owner.id))
    if (owned or 0) >= MAX_OWNED_GROUPS:
        raise RuleError(
            _(
                "You facilitate %(max)d groups already, the most one person can. "
                "Delete one you no longer need, or hand it over to a member.",
                max=MAX_OWNED_GROUPS,
            )
        )
    group = Group(name=name, deck=deck, owner=owner, cards=" ".join(cards) if deck == CUSTOM else None)
    group.memberships.append(Membership(user=owner, role=Role.OWNER))
    db.session.add(group)
    db.session.flush()
    return group


def group_by_invite(token: str) -> Group | None:
    """The group whose current invite link carries this token (None for anything malformed)."""
    if not INVITE_TOKEN.fullmatch(token):
        return None
    return db.session.scalar(sa.select(Group).where(Group.invite_token == token))


def is_member(group: Group, user: User) -> bool:
    """Whether the user belongs to the group (read afresh)."""
    mine = sa.exists().where(Membership.group_id == group.id, Membership.user_id == user.id)
    return bool(db.session.scalar(sa.select(mine)))


def join_group(group: Group, user: User, role: str) -> None:
    """Add user to the group; AlreadyMember when they already were one (also under a race)."""
    change_group(group.id)
    joined = insert_unless_exists(
        Membership,
        {"group_id": group.id, "user_id": user.id, "role": role},
        unique=["group_id", "user_id"],
    )
    if not joined:
        raise RuleError(_("You are already a member of “%(group)s”.", group=group.name))
    members = db.session.scalar(
        sa.select(sa.func.count()).select_from(Membership).where(Membership.group_id == group.id)
    )
    if (members or 0) > MAX_MEMBERS:
        raise RuleError(
            _("“%(group)s” is full: a group has at most %(max)d members.", group=group.name, max=MAX_MEMBERS)
        )


#: The longest issue key, as the form and the database allow.
KEY_MAX = 32


def issue_key(typed: str) -> str:
    """An issue key as it is kept: NFKC, so that "Ä-1" typed as one character or as "A" with a
    combining diaeresis, or "ＡＢＣ-1" in full width, is one key; RuleError when it grows too long."""
    key = unicodedata.normalize("NFKC", typed).strip()
    # NFKC can make what the form checked into what it refuses: "¨" becomes a space and a lone
    # diaeresis, which would sit on whatever the page shows before the key.
    if not key:
        raise RuleError(_("%(what)s cannot be empty.", what=_("An issue key")))
    if has_lone_marks(key) or has_forbidden_characters(key):
        raise RuleError(
            _("%(what)s cannot contain an accent or other mark on its own.", what=_("An issue key"))
        )
    if len(key) > KEY_MAX:
        raise RuleError(_("An issue key has at most %(max)d characters.", max=KEY_MAX))
    return key


def taken_keys(group: Group, *, but: Issue | None = None) -> set[str]:
    """What the group's issue keys look like (`looks`: "K-1", "k-1" and "К-1" with a Cyrillic К are
    one key), in Python because SQLite's lower() folds ASCII only."""
    rows = db.session.execute(sa.select(Issue.id, Issue.key).where(Issue.group_id == group.id))
    return {looks(key) for issue_id, key in rows if but is None or issue_id != but.id}


def unique_key(key: str, keys: set[str]) -> str:
    """The key as kept, or RuleError when one of keys (`taken_keys`) looks like it."""
    key = issue_key(key)
    if looks(key) in keys:
        raise RuleError(_("The group already has an issue %(key)s.", key=key))
    return key


@dataclass(frozen=True)
class NewIssue:
    """An issue to add, its fields checked: the key, the short title people estimate by (kept as
    the issue's `description`), the tracker's long description, and an estimate made elsewhere
    (a card of the group's deck) that is recorded as the final one."""

    key: str
    description: str
    details: str = ""
    estimate: str | None = None


def add_issue(group: Group, key: str, description: str, details: str = "") -> Issue:
    """A new issue at the end of the backlog, its first round open; RuleError when the key is
    taken or the group is full."""
    change_group(group.id)
    return add_issues(group, [NewIssue(key, description, details)])[0]


def add_issues(group: Group, rows: list[NewIssue]) -> list[Issue]:
    """New issues at the end of the backlog, in order (the caller has locked the group); one with
    an estimate is estimated already, as if the facilitator had recorded it."""
    taken = taken_keys(group)
    # Counted, not taken from `taken`: two keys from before the look-alike rule may look as one.
    count = (
        db.session.scalar(sa.select(sa.func.count()).select_from(Issue).where(Issue.group_id == group.id))
        or 0
    )
    if count + len(rows) > MAX_ISSUES:
        raise RuleError(
            _(
                "A group holds at most %(max)d issues; this one has %(count)d. "
                "Delete estimated issues, or start a new group.",
                max=MAX_ISSUES,
                count=count,
            )
        )
    last = db.session.scalar(sa.select(sa.func.max(Issue.position)).where(Issue.group_id == group.id)) or 0
    issues = []
    for offset, row in enumerate(rows, start=1):
        key = unique_key(row.key, taken)
        taken.add(looks(key))
        issue = Issue(
            group_id=group.id,
            key=key,
            description=row.description,
            details=row.details,
            state=IssueState.ESTIMATED if row.estimate else IssueState.VOTING,
            final_estimate=row.estimate or None,
        )
        issue.position = last + offset
        # An estimate made elsewhere reads with the deck it was taken with, as a voted round's
        # does: a deck changed later must not drop it from the total or read it as another card.
        taken_with = {"deck": group.deck, "cards": group.cards} if row.estimate else {}
        issue.rounds.append(Round(number=1, **taken_with))
        db.session.add(issue)
        issues.append(issue)
    db.session.flush()
    return issues


def edit_issue(issue: Issue, key: str, description: str, details: str | None = None) -> None:
    """Change an issue's key and description (and details, when given); the key stays unique in
    the group."""
    change_group(issue.group_id)
    issue.key, issue.description = unique_key(key, taken_keys(issue.group, but=issue)), description
    if details is not None:
        issue.details = details


#: How an issue moves in the backlog; "place" goes to a place given apart (dragging an issue).
MOVES = ("up", "down", "top", "bottom", "place")


def move_issue(issue: Issue, to: str, place: int | None = None) -> int:
    """Move an issue in the backlog: one place up or down, to the top or bottom, or to `place`
    (1 is the top; beyond the end is the bottom). Returns the place it is in now."""
    change_group(issue.group_id)
    order = list(issue.group.issues)
    here = order.index(issue)
    there = {
        "up": max(here - 1, 0),
        "down": min(here + 1, len(order) - 1),
        "top": 0,
        "bottom": len(order) - 1,
    }
    there["place"] = min(max(place or 1, 1), len(order)) - 1
    order.insert(there[to], order.pop(here))
    for position, each in enumerate(order, start=1):
        each.position = position
    return there[to] + 1


def delete_issue(issue: Issue) -> str:
    """Delete an issue with its rounds (and its open round's key); returns its key."""
    change_group(issue.group_id)
    if issue.group.current_issue_id == issue.id:
        issue.group.current_issue = None
    forget_keys([issue])
    key = issue.key
    db.session.delete(issue)
    return key


def forget_keys(issues: list[Issue]) -> None:
    """Destroy the ballot keys of these issues' open rounds: nothing may outlive their ballots."""
    for issue in issues:
        for round_ in issue.rounds:
            if round_.key_id:
                ballot_keys.store.destroy(round_.key_id)


def _member(group: Group, user_id: int) -> Membership:
    membership: Membership | None = db.session.scalar(
        sa.select(Membership).where(Membership.group_id == group.id, Membership.user_id == user_id)
    )
    if membership is None:
        raise RuleError(_("That person is not a member of this group."))
    if membership.is_owner:
        raise RuleError(_("The facilitator's own role cannot be changed."))
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


def leave_group(group: Group, user: User) -> None:
    """Leave a group as a member or observer, withdrawing one's own open ballots (only those)."""
    change_group(group.id)
    membership = db.session.scalar(
        sa.select(Membership).where(Membership.group_id == group.id, Membership.user_id == user.id)
    )
    if membership is None:
        raise RuleError(_("You are not a member of this group."))
    if membership.is_owner:
        raise RuleError(str(OWNER_CANNOT_LEAVE))
    open_rounds = (
        sa.select(Round.id).join(Issue).where(Issue.group_id == group.id, Round.revealed_at.is_(None))
    )
    db.session.execute(sa.delete(Ballot).where(Ballot.user_id == user.id, Ballot.round_id.in_(open_rounds)))
    db.session.delete(membership)


def hand_over(group: Group, user_id: int) -> Membership:
    """Make a member the facilitator; the old facilitator stays as a member."""
    change_group(group.id)
    new_owner = _member(group, user_id)
    owned = db.session.scalar(sa.select(sa.func.count()).select_from(Group).where(Group.owner_id == user_id))
    if (owned or 0) >= MAX_OWNED_GROUPS:
        raise RuleError(
            _(
                "%(nickname)s already facilitates %(max)d groups, the most anyone can.",
                nickname=new_owner.user.nickname,
                max=MAX_OWNED_GROUPS,
            )
        )
    old_owner = next(m for m in group.memberships if m.is_owner)
    old_owner.role, new_owner.role = Role.MEMBER, Role.OWNER
    group.owner_id = new_owner.user_id
    return new_owner


def delete_group(group: Group) -> str:
    """Delete the group and all it holds (and the keys of its open rounds); returns its name."""
    change_group(group.id)
    forget_keys(list(group.issues))
    name = group.name
    group.current_issue = None
    db.session.flush()
    db.session.delete(group)
    return name


def new_invite(group: Group) -> None:
    """Replace the invite link; the old one stops working at once."""
    change_group(group.id)
    group.invite_token = new_token()


def change_settings(
    group: Group,
    *,
    auto_reveal: bool,
    min_votes: int,
    facilitator_votes: bool,
    present_only: bool,
    deck: str,
    cards: tuple[str, ...],
) -> bool:
    """Change how the group votes (the form bounds min_votes to 1..MIN_VOTES_MAX).

    Open ballots stay whatever changes: a facilitator who stops voting keeps the card already
    cast, and an open round keeps the threshold and the deck its first vote was cast under.
    Returns whether the deck changed.
    """
    change_group(group.id)
    group.auto_reveal, group.min_votes, group.facilitator_votes = auto_reveal, min_votes, facilitator_votes
    group.present_only = present_only
    # Rounds already voted in keep the deck they were voted with (Round.deck); the others follow.
    new_deck = (deck, " ".join(cards) if deck == CUSTOM else None)
    changed = new_deck != (group.deck, group.cards)
    group.deck, group.cards = new_deck
    return changed

"""An issue as its members see it, loaded in a fixed number of queries; shared by page and API."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import contains_eager, defaultload, joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from ..database import read_rows
from ..estimates import Result, aggregate
from ..extensions import db
from ..models import Ballot, Group, Issue, Membership, Round, utcnow
from .rules import counted_voters, key_alive


def load_issue(issue_id: int) -> Issue | None:
    """The issue with its group's members, its rounds, their ballots and tallies loaded."""
    return db.session.scalar(ISSUE_BY_ID, {"issue_id": issue_id})


def load_current_issue(group_id: int) -> Issue | None:
    """The issue the group's room is on, loaded as load_issue loads it, from the group's id: None
    when the room has none (or the group is gone)."""
    return db.session.scalar(CURRENT_ISSUE, {"group_id": group_id})


#: What comes with an issue besides its group: two statements in all.
LOADED_WITH_ISSUE = (
    # The group's members and their users in the issue's statement: a row per member.
    defaultload(Issue.group).joinedload(Group.memberships).joinedload(Membership.user),
    # The rounds with their ballots and tallies, in a second statement: a row per ballot of an
    # open round (it has no tally yet), a ballot times a card of a revealed one. An issue has a
    # round or two, a round at most a ballot per member and a tally per card. A ballot's user is
    # loaded only when it is not a member's (voter_list): rarely.
    selectinload(Issue.rounds).joinedload(Round.ballots),
    selectinload(Issue.rounds).joinedload(Round.tallies),
)
# Made once: SQLAlchemy keeps a statement's cache key with it, so that each load does not build
# the statement and its loader options again and work out their key (a fifth of a room's load).
ISSUE_BY_ID = (
    sa.select(Issue)
    .where(Issue.id == sa.bindparam("issue_id"))
    .options(joinedload(Issue.group), *LOADED_WITH_ISSUE)
)
CURRENT_ISSUE = (
    sa.select(Issue)
    .join(Group, Group.current_issue_id == Issue.id)
    .where(Group.id == sa.bindparam("group_id"))
    .options(contains_eager(Issue.group), *LOADED_WITH_ISSUE)
)


#: A round as it is now: each of its ballots with the round's columns and the group's settled
#: version as of the same read (the ballot's columns NULL when it has none). See live/reuse.py.
_ROUND_COLUMNS = tuple(attribute.key for attribute in sa.inspect(Round).column_attrs)
_ROUND_NOW = (
    sa.select(
        (Group.version - Group.vote_versions).label("settled"),
        Ballot.user_id,
        Ballot.sealed,
        *(getattr(Round, column) for column in _ROUND_COLUMNS),
    )
    .select_from(Group)
    .join(Round, Round.id == sa.bindparam("round_id"))
    .outerjoin(Ballot, Ballot.round_id == Round.id)
    .where(Group.id == sa.bindparam("group_id"))
    .order_by(Ballot.id)
)


def read_round_again(issue: Issue) -> int | None:
    """Read the open round of an issue loaded earlier (load_issue, load_current_issue) again into
    it, its ballots and its columns (a vote may give it its key, deck and threshold); returns the
    group's settled version as of that read. None, and the issue left as it was, when the round or
    the group is gone or a ballot is not a member's (whose user was not loaded)."""
    round_ = issue.current_round
    values = {"round_id": round_.id, "group_id": issue.group_id}
    rows = read_rows(db.session.connection(), _ROUND_NOW, values)
    members = {membership.user_id for membership in issue.group.memberships}
    if not rows or any(row[1] is not None and row[1] not in members for row in rows):
        return None
    for column, value in zip(_ROUND_COLUMNS, rows[0][3:], strict=True):
        set_committed_value(round_, column, value)
    ballots = [
        Ballot(round_id=round_.id, user_id=user_id, sealed=sealed)
        for _settled, user_id, sealed, *_round in rows
        if user_id is not None
    ]
    set_committed_value(round_, "ballots", ballots)
    return int(rows[0][0])


def round_result(issue: Issue, round_: Round) -> Result | None:
    """The anonymous aggregate of a revealed round, None while it is open."""
    if not round_.revealed:
        return None
    return aggregate(round_.deck_rules(issue.group), {t.card: t.count for t in round_.tallies})


def result_json(issue: Issue, round_: Round) -> dict[str, Any] | None:
    """A round's result in the JSON shape, None while it is open."""
    result = round_result(issue, round_)
    return result.as_dict() if result else None


def as_utc(moment: datetime) -> datetime:
    """The moment as an aware UTC datetime (SQLite hands back naive ones; they were stored in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_utc(moment: datetime | None) -> str | None:
    """A moment in ISO 8601, UTC, to the second (`2026-11-21T12:00:00Z`), or None."""
    return None if moment is None else as_utc(moment).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_left(round_: Round) -> int | None:
    """Whole seconds until the open round's timer runs out (0 once it has), None without a timer."""
    if round_.timer_ends_at is None or round_.revealed:
        return None
    return max(0, math.ceil((as_utc(round_.timer_ends_at) - utcnow()).total_seconds()))


def voted_now(issue: Issue) -> set[int]:
    """Who has a ballot that counts in the issue's open round (all of its voters once revealed)."""
    current = issue.current_round
    return counted_voters(current, key_alive(current))


def joined_late(issue: Issue) -> set[str]:
    """The nicknames of voters who joined the group while its open round was open: everyone sees
    them marked, so that nobody's second browser slips into a round to fill its threshold."""
    opened = issue.current_round.opened_at
    if opened is None or issue.current_round.revealed:
        return set()
    members = issue.group.memberships
    # A voter made an observer after voting keeps the mark: their card is in the round all the same.
    balloted = {ballot.user_id for ballot in issue.current_round.ballots}
    return {
        m.user.nickname
        for m in members
        if (m.votes or m.user_id in balloted) and as_utc(m.joined_at) > as_utc(opened)
    }


def voter_list(issue: Issue, voted: set[int]) -> list[dict[str, Any]]:
    """Everyone expected to vote, then anyone else whose ballot is in the round (an open ballot
    stays when its voter becomes an observer or leaves): nicknames and whether they voted."""
    expected = [m.user for m in issue.group.memberships if m.votes]
    listed = {user.id for user in expected}
    others = [b.user for b in issue.current_round.ballots if b.user_id in voted and b.user_id not in listed]
    return [{"nickname": user.nickname, "voted": user.id in voted} for user in expected + others]


def issue_state(issue: Issue, voted: set[int] | None = None) -> dict[str, Any]:
    """The issue in the JSON shape of SPEC.md (`GET /api/issues/<id>`): never a voter's card.
    `voted`, when the caller has it: who has a ballot that counts in the open round."""
    current = issue.current_round
    if voted is None:
        voted = voted_now(issue)
    voters = voter_list(issue, voted)
    return {
        "id": issue.id,
        "group_id": issue.group_id,
        "key": issue.key,
        "description": issue.description,
        "details": issue.details,
        "state": issue.state,
        "round": current.number,
        "deck": issue.deck_rules.name,
        "voters": voters,
        "votes_cast": len(voted),
        "votes_expected": len(voters),
        "result": result_json(issue, current),
        "final_estimate": issue.final_estimate,
        "timer_ends_at": iso_utc(current.timer_ends_at),
        "history": [{"round": r.number, "result": result_json(issue, r)} for r in issue.rounds[:-1]],
    }

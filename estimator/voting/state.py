"""An issue as its members see it, loaded in a fixed number of queries; shared by page and API."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..estimates import DECKS, Result, aggregate
from ..extensions import db
from ..models import Group, Issue, Membership, Round


def load_issue(issue_id: int) -> Issue | None:
    """The issue with its group's members, its rounds, their ballots and tallies loaded."""
    return db.session.scalar(
        sa.select(Issue)
        .where(Issue.id == issue_id)
        .options(
            selectinload(Issue.group).selectinload(Group.memberships).selectinload(Membership.user),
            selectinload(Issue.rounds).selectinload(Round.ballots),
            selectinload(Issue.rounds).selectinload(Round.tallies),
        )
    )


def round_result(issue: Issue, round_: Round) -> Result | None:
    """The anonymous aggregate of a revealed round, None while it is open."""
    if not round_.revealed:
        return None
    return aggregate(DECKS[issue.group.deck], {t.card: t.count for t in round_.tallies})


def issue_state(issue: Issue) -> dict:
    """The issue in the JSON shape of SPEC.md (`GET /api/issues/<id>`): never a voter's card."""
    current = issue.current_round
    voted = {ballot.user_id for ballot in current.ballots}
    voters = [
        {"nickname": m.user.nickname, "voted": m.user_id in voted} for m in issue.group.memberships if m.votes
    ]
    result = round_result(issue, current)
    return {
        "id": issue.id,
        "group_id": issue.group_id,
        "key": issue.key,
        "description": issue.description,
        "state": issue.state,
        "round": current.number,
        "deck": issue.group.deck,
        "voters": voters,
        "votes_cast": len(voted),
        "votes_expected": len(voters),
        "result": result.as_dict() if result else None,
        "final_estimate": issue.final_estimate,
        "history": [
            {"round": r.number, "result": round_result(issue, r).as_dict()} for r in issue.rounds[:-1]
        ],
    }

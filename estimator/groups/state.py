"""A group as its members see it, loaded in a fixed number of queries; shared by page and API."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from ..estimates import total
from ..extensions import db
from ..live.presence import present_users
from ..models import Ballot, Group, Issue, Membership, Round
from ..sealing import KeyStoreError, ballot_keys


def load_group(group_id: int) -> Group | None:
    """The group with its owner, members and issues (and their rounds) loaded: three queries
    whatever its size (joins rather than IN lists, which are cut into pieces of 500)."""
    return db.session.scalar(
        sa.select(Group)
        .where(Group.id == group_id)
        .options(
            joinedload(Group.owner),
            selectinload(Group.memberships).joinedload(Membership.user),
            selectinload(Group.issues).joinedload(Issue.rounds),
        )
    )


def ballots_per_round(rounds: list[Round]) -> dict[int, int]:
    """How many people voted in each round, in one query: readable sealed ballots while a round is
    open (none when its key was lost), everyone who took part once it is revealed (as the issue's
    own status counts them)."""
    alive = live_keys(rounds)
    round_ids = [r.id for r in rounds if r.revealed or r.key_id is None or r.key_id in alive]
    if not round_ids:
        return {}
    rows = db.session.execute(
        sa.select(Ballot.round_id, sa.func.count())
        .join(Round)
        .where(
            Ballot.round_id.in_(round_ids),
            sa.or_(Ballot.sealed.is_not(None), Round.revealed_at.is_not(None)),
        )
        .group_by(Ballot.round_id)
    )
    return {round_id: count for round_id, count in rows}


def live_keys(rounds: list[Round]) -> set[str]:
    """The key ids of these open rounds that the key store still holds, in one look (all of them
    when the store cannot be reached: this only decides what pages show, never what is counted)."""
    key_ids = {r.key_id for r in rounds if r.key_id is not None and not r.revealed}
    try:
        return ballot_keys.store.present(key_ids)
    except KeyStoreError:
        return key_ids


def voters_expected(group: Group) -> int:
    """How many members vote (observers are never waited for)."""
    return sum(1 for membership in group.memberships if membership.votes)


def group_state(group: Group) -> dict[str, Any]:
    """The group in the JSON shape of SPEC.md (`GET /api/groups/<id>`)."""
    current_rounds = {issue.id: issue.current_round for issue in group.issues}
    cast = ballots_per_round(list(current_rounds.values()))
    expected = voters_expected(group)
    present = present_users(group.id)
    return {
        "id": group.id,
        "name": group.name,
        "deck": group.deck,
        "owner": group.owner.nickname,
        "members": [{"nickname": m.user.nickname, "role": m.role} for m in group.memberships],
        "current_issue": group.current_issue_id,
        "total": total(
            group.deck_rules,
            [
                (i.final_estimate, current_rounds[i.id].deck_rules(group))
                for i in group.issues
                if i.final_estimate
            ],
        ),
        "settings": {
            "auto_reveal": group.auto_reveal,
            "min_votes": group.min_votes,
            "facilitator_votes": group.facilitator_votes,
            "present_only": group.present_only,
        },
        "present": sorted(m.user.nickname for m in group.memberships if m.user_id in present),
        "issues": [
            {
                "id": issue.id,
                "key": issue.key,
                "description": issue.description,
                "state": issue.state,
                "round": current_rounds[issue.id].number,
                "votes_cast": cast.get(current_rounds[issue.id].id, 0),
                "votes_expected": expected,
                "final_estimate": issue.final_estimate,
            }
            for issue in group.issues
        ],
    }

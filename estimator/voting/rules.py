"""The voting rules: one card per voter per round, anonymous reveal, final estimate, re-vote."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from ..changes import RuleError
from ..database import lock_group, upsert
from ..estimates import DECKS
from ..extensions import db
from ..models import Ballot, Issue, IssueState, Round, Tally, User, utcnow


class VotingError(RuleError):
    """A step the voting rules refuse in the issue's current state."""


def cast_vote(issue: Issue, voter: User, card: str) -> None:
    """Record or replace the voter's card in the open round."""
    lock_group(issue.group_id)
    if issue.state != IssueState.VOTING:
        raise VotingError("The votes of this round are already revealed.")
    upsert(
        Ballot,
        {"round_id": issue.current_round.id, "user_id": voter.id, "card": card},
        unique=["round_id", "user_id"],
        update=["card"],
    )


def reveal(issue: Issue) -> None:
    """Reveal the open round: count its cards, then unlink every card from its voter.

    Both happen in the caller's transaction, so no committed state ever shows a revealed
    round whose cards are still tied to voters.
    """
    lock_group(issue.group_id)
    if issue.state != IssueState.VOTING:
        raise VotingError("This round is already revealed.")
    current = issue.current_round
    tally = Counter(ballot.card for ballot in current.ballots if ballot.card is not None)
    if not tally:
        raise VotingError("Nobody has voted yet: there is nothing to reveal.")
    deck = DECKS[issue.group.deck]
    for card in sorted(tally, key=deck.sort_key):
        db.session.add(Tally(round_id=current.id, card=card, count=tally[card]))
    db.session.execute(
        sa.update(Ballot).where(Ballot.round_id == current.id).values(card=None),
        execution_options={"synchronize_session": False},
    )
    db.session.expire(current, ["ballots"])
    current.revealed_at = utcnow()
    issue.state = IssueState.REVEALED


def accept(issue: Issue, estimate: str) -> None:
    """Record the team's final estimate for a revealed issue (it may be changed later)."""
    lock_group(issue.group_id)
    if issue.state == IssueState.VOTING:
        raise VotingError("Reveal the votes before recording a final estimate.")
    issue.final_estimate = estimate
    issue.state = IssueState.ESTIMATED


def revote(issue: Issue) -> Round:
    """Open a new round; the earlier ones stay as anonymous history."""
    lock_group(issue.group_id)
    if issue.state == IssueState.VOTING:
        raise VotingError("This round is still open: reveal it before starting another.")
    new_round = Round(number=issue.current_round.number + 1)
    issue.rounds.append(new_round)
    issue.state = IssueState.VOTING
    issue.final_estimate = None
    return new_round

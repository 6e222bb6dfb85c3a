"""The voting rules: one sealed card per voter per round, anonymous reveal, final estimate, re-vote.

A card is only ever stored sealed under its round's key, which lives in the key store and never
in the database (see sealing.py). The reveal opens the round's ballots, counts them into tallies
(card → how many, no voter), clears the sealed cards and destroys the key, all in one step: after
it nothing anywhere can tie a value to a voter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import ngettext

from ..changes import RuleError
from ..database import bump_version, bump_version_unless_changed, change_group, group_unchanged, lock_group
from ..estimates import CUSTOM
from ..extensions import db
from ..instances import refuse_foreign_round, registry
from ..live.presence import present_users
from ..models import Ballot, Group, Issue, IssueState, Round, Tally, utcnow
from ..sealing import KeyStoreError, ballot_keys, new_key_id, seal, unseal
from .booth import Booth, load_issue_to_vote


@dataclass(frozen=True)
class OwnBallot:
    """What a voter may see of their own ballot in the open round."""

    card: str | None = None
    #: They voted, but the round's key was lost (its store restarted): they must vote again.
    lost: bool = False


def round_key(round_: Round | Booth) -> bytes | None:
    """The open round's key; None when it was never made, or was lost when its store restarted."""
    return ballot_keys.store.get(round_.key_id) if round_.key_id else None


def key_alive(round_: Round) -> bool:
    """Whether the round's sealed ballots can still be read (an unreachable store counts as yes:
    this only decides what pages show, never what is counted)."""
    if round_.revealed or round_.key_id is None:
        return True
    try:
        return round_key(round_) is not None
    except KeyStoreError:
        return True


def _open(key: bytes | None, round_: Round, ballot: Ballot) -> str | None:
    """The ballot's card, or None when it cannot be read."""
    if key is None or ballot.sealed is None or round_.key_id is None:
        return None
    return unseal(key, ballot.sealed, round_id=round_.id, user_id=ballot.user_id, key_id=round_.key_id)


def counted_voters(round_: Round, alive: bool) -> set[int]:
    """Who has a ballot that counts: a readable one while open, any after the reveal."""
    if round_.revealed:
        return {ballot.user_id for ballot in round_.ballots}
    if not alive:
        return set()
    return {ballot.user_id for ballot in round_.ballots if ballot.sealed is not None}


def own_ballot(round_: Round, user_id: int) -> OwnBallot:
    """The voter's own card in the open round: the only card anyone is ever shown."""
    ballot = next((b for b in round_.ballots if b.user_id == user_id), None)
    if round_.revealed or ballot is None:
        return OwnBallot()
    card = _open(round_key(round_), round_, ballot)
    return OwnBallot(card=card, lost=card is None)


class LockNeeded(Exception):
    """A vote read at a glance (booth.open_booth) must be cast again from a booth read under the
    group's lock: it is not one a single guarded statement makes, or the group changed since."""


def cast_vote(booth: Booth, card: str) -> None:
    """Seal the booth's voter's card into the open round, replacing their earlier one.

    Submitting the card one already holds changes nothing, and changing one's card is seen by
    nobody else: only a change in who has voted bumps the version that live pages watch. With
    auto-reveal on, the vote that completes the round reveals it in the same transaction (the
    group's lock, taken before the booth was read, makes two last votes racing reveal exactly
    once, counting both). Written row by row, without loading the issue, and with the version bump
    in one statement on PostgreSQL: votes are the busiest writes there are.

    From a glanced booth only a new voter's ballot in a group without auto-reveal is cast, in one
    statement that writes nothing unless the group's version is still the one the booth read;
    raises LockNeeded for any other vote, or when the group changed, having written nothing.
    """
    if booth.state != IssueState.VOTING:
        raise RuleError(_("The votes of this round are already revealed."))
    voter_id = booth.voter_id
    key = round_key(booth)
    key_id = booth.key_id
    visible = booth.sealed is None  # a first ballot, or one whose key was lost: a new voter shows
    if booth.glanced and (booth.auto_reveal or not visible or (key is None and booth.any_sealed)):
        raise LockNeeded
    connection = db.session.connection()
    if key is None or key_id is None:
        if booth.any_sealed:
            refuse_foreign_round(booth.key_store)
        visible = visible or booth.any_sealed
        if booth.any_sealed:  # sealed under a lost key: their voters must vote again
            connection.execute(_FORGET_CARDS, {"of_round": booth.round_id})
        key_id = new_key_id()
        key = ballot_keys.store.create(key_id)
    elif booth.sealed is not None:
        if unseal(key, booth.sealed, round_id=booth.round_id, user_id=voter_id, key_id=key_id) == card:
            return
    sealed = seal(key, card, round_id=booth.round_id, user_id=voter_id, key_id=key_id)
    values = {"of_round": booth.round_id, "of_user": voter_id, "card": sealed}
    writes = [_RESEAL if booth.has_ballot else _BALLOT]
    if key_id != booth.key_id or booth.round_min_votes is None or not booth.round_deck_fixed:
        # The round's new key, and the promise and the deck its first ballot is cast under.
        writes.insert(0, _ROUND_SETTINGS)
        promise = booth.group_min_votes if booth.round_min_votes is None else booth.round_min_votes
        values |= {
            "round_key": key_id,
            "round_store": registry().identity(),
            "round_min": promise,
            "round_opened": utcnow(),
            "round_deck": booth.deck.name,
            "round_cards": " ".join(booth.deck.cards) if booth.deck.name == CUSTOM else None,
        }
    if booth.glanced:
        if not bump_version_unless_changed(
            booth.group_id,
            booth.version,
            *(_GUARDED[write] for write in writes),
            vote=True,
            **values,
        ):
            if key_id != booth.key_id:
                ballot_keys.store.destroy(key_id)  # made for this vote, which sealed nothing
            raise LockNeeded
        return
    if not visible:
        for write in writes:
            connection.execute(write, values)
        return
    # A vote: a change of the open round alone (an automatic reveal that follows bumps the version
    # again, as a change of anything).
    bump_version(booth.group_id, *writes, vote=True, **values)
    issue = load_issue_to_vote(booth.issue_id) if booth.auto_reveal else None
    if issue is not None and everybody_voted(issue) and revealable(issue, key):
        reveal(issue)


_FORGET_CARDS = sa.update(Ballot).where(Ballot.round_id == sa.bindparam("of_round")).values(sealed=None)
_BALLOT = sa.insert(Ballot).values(
    round_id=sa.bindparam("of_round"), user_id=sa.bindparam("of_user"), sealed=sa.bindparam("card")
)
_RESEAL = (
    sa.update(Ballot)
    .where(Ballot.round_id == sa.bindparam("of_round"), Ballot.user_id == sa.bindparam("of_user"))
    .values(sealed=sa.bindparam("card"))
)
_ROUND_SETTINGS = (
    sa.update(Round)
    .where(Round.id == sa.bindparam("of_round"))
    .values(
        key_id=sa.bindparam("round_key"),
        key_store=sa.bindparam("round_store"),
        min_votes=sa.bindparam("round_min"),
        deck=sa.bindparam("round_deck"),
        cards=sa.bindparam("round_cards"),
        opened_at=sa.func.coalesce(
            Round.opened_at, sa.bindparam("round_opened", type_=sa.DateTime(timezone=True))
        ),
    )
)


#: The same writes, made only if the group is unchanged (bump_version_unless_changed).
_GUARDED = {
    _BALLOT: sa.insert(Ballot).from_select(
        ["round_id", "user_id", "sealed"],
        sa.select(
            sa.bindparam("of_round", type_=sa.Integer),
            sa.bindparam("of_user", type_=sa.Integer),
            sa.bindparam("card", type_=sa.LargeBinary),
        ).where(group_unchanged()),
    ),
    _RESEAL: _RESEAL.where(group_unchanged()),
    _ROUND_SETTINGS: _ROUND_SETTINGS.where(group_unchanged()),
}


def expected_voters(issue: Issue, present: set[int] | None) -> set[int]:
    """Who the open round waits for: every member who votes or, when the group waits only for the
    voters present (`present`: who has the group open now), those of them present and those who
    voted anyway."""
    voters = {m.user_id for m in issue.group.memberships if m.votes}
    if not issue.group.present_only or present is None:
        return voters
    voted = {ballot.user_id for ballot in issue.current_round.ballots if ballot.sealed is not None}
    return voters & (present | voted)


def present_if_needed(issue: Issue) -> set[int] | None:
    """Who has the group open now, when the group waits only for them; else None (not read)."""
    return present_users(issue.group_id) if issue.group.present_only else None


def everybody_voted(issue: Issue) -> bool:
    """Whether every expected voter has a ballot in the open round (what auto-reveal waits for)."""
    voted = {ballot.user_id for ballot in issue.current_round.ballots if ballot.sealed is not None}
    expected = expected_voters(issue, present_if_needed(issue))
    return bool(expected) and expected <= voted


def waiting_for(issue: Issue, voted: set[int], expected: set[int]) -> list[int]:
    """The expected voters a nudge of the open round still speaks to: those who have not voted."""
    round_ = issue.current_round
    if round_.nudged_at is None or round_.revealed:
        return []
    return sorted(expected - voted)


def nudge(issue: Issue) -> list[str]:
    """Nudge the expected voters who have not voted: each of their screens says it is waiting for
    them. Returns their nicknames. Nobody learns anything of a card from it."""
    lock_group(issue.group_id)
    if issue.state != IssueState.VOTING:
        raise RuleError(_("The votes of this round are already revealed."))
    round_ = issue.current_round
    voted = counted_voters(round_, key_alive(round_))
    late = expected_voters(issue, present_if_needed(issue)) - voted
    if not late and expected_voters(issue, None) - voted:
        raise RuleError(_("Everybody here has voted: whoever has not is away, so there is nobody to nudge."))
    if not late:
        raise RuleError(_("Everybody has voted: there is nobody to nudge."))
    round_.nudged_at = utcnow()
    bump_version(issue.group_id)
    return sorted(m.user.nickname for m in issue.group.memberships if m.user_id in late)


def revealable(issue: Issue, key: bytes | None) -> bool:
    """Whether the open round holds enough readable cards, besides the facilitator's, to be revealed."""
    round_ = issue.current_round
    readers = {ballot.user_id for ballot in round_.ballots if _open(key, round_, ballot) is not None}
    return cover(issue, readers) >= reveal_threshold(issue)


@dataclass(frozen=True)
class RevealCheck:
    """What the pages may say of a reveal: counts of who has voted, never anything of the cards."""

    #: Votes besides the facilitator's that the round needs, and how many of them are missing.
    needed: int
    short: int
    #: Every expected voter has voted.
    everybody: bool
    #: How many people besides the facilitator are expected to vote: fewer than `needed` means the
    #: round can never be revealed until more join or the facilitator lowers the threshold.
    others: int
    #: How many expected voters have not voted: whom a nudge would reach (with `present_only`, a
    #: voter who is away is not expected, and is not nudged).
    late: int = 0

    @property
    def ready(self) -> bool:
        """Everybody has voted and a reveal will be accepted: the cue the facilitator waits for."""
        return self.everybody and not self.short


def reveal_check(issue: Issue, voted: set[int], expected: set[int]) -> RevealCheck:
    """Whether the open round may be revealed, from who has voted and who is expected to."""
    needed = reveal_threshold(issue)
    return RevealCheck(
        needed=needed,
        short=max(0, needed - cover(issue, voted)),
        everybody=bool(expected) and expected <= voted,
        # Every voter of the group, those away too: they can still vote (present_only only stops
        # the round waiting for them), so they are no reason to invite more or lower the minimum.
        others=cover(issue, expected_voters(issue, None) | voted),
        late=len(expected - voted),
    )


def cover(issue: Issue, voted: set[int]) -> int:
    """How many of these voters' cards hide each card in a result: all but the facilitator's.

    The facilitator knows their own card, so it hides nobody's from them; a "?" hides a card as
    well as a number does (it is counted in the result like any card), and counting it keeps the
    threshold from ever depending on which cards were cast.
    """
    return len(voted - {issue.group.owner_id})


def reveal(issue: Issue) -> Round:
    """Reveal the open round: count its cards, unlink every card from its voter, destroy the key.

    All of it happens in the caller's transaction, and the key is destroyed before that
    transaction commits: should the commit fail, the ballots are unreadable (their voters vote
    again) rather than a revealed round's key surviving anywhere.
    """
    lock_group(issue.group_id)
    if issue.state != IssueState.VOTING:
        raise RuleError(_("This round is already revealed."))
    round_ = issue.current_round
    key = round_key(round_)
    if key is None and any(ballot.sealed is not None for ballot in round_.ballots):
        refuse_foreign_round(round_.key_store)
    cards = [_open(key, round_, ballot) for ballot in round_.ballots]
    readable = [card for card in cards if card is not None]
    lost = len(cards) - len(readable)
    readers = {ballot.user_id for ballot, card in zip(round_.ballots, cards, strict=True) if card is not None}
    needed, covering = reveal_threshold(issue), cover(issue, readers)
    if covering < needed:
        raise RuleError(threshold_message(needed, covering, lost))
    tally = Counter(readable)
    for card in sorted(tally, key=issue.deck_rules.sort_key):
        db.session.add(Tally(round_id=round_.id, card=card, count=tally[card]))
    for ballot, opened in zip(round_.ballots, cards, strict=True):
        if opened is None:
            db.session.delete(ballot)  # a lost ballot: that voter took no part in the result
        else:
            ballot.sealed = None
    round_.lost_ballots = lost
    round_.revealed_at = utcnow()
    round_.timer_ends_at = None
    issue.state = IssueState.REVEALED
    bump_version(issue.group_id)
    db.session.flush()
    if round_.key_id is not None:
        ballot_keys.store.destroy(round_.key_id)
        round_.key_id = None
    return round_


def reveal_threshold(issue: Issue) -> int:
    """How many votes besides the facilitator's the open round needs: the threshold when its first
    vote was cast, or the group's if that is higher now (raising it protects voters at once;
    lowering it waits)."""
    fixed = issue.current_round.min_votes
    return max(fixed, issue.group.min_votes) if fixed is not None else issue.group.min_votes


def threshold_message(needed: int, covering: int, lost: int = 0) -> str:
    """Why a round cannot be revealed yet: how many more votes it needs, and whose count.

    It depends only on how many people other than the facilitator have voted, never on the cards:
    a refusal must not tell anyone what the people who voted so far chose.
    """
    parts = [
        ngettext(
            "Revealing needs the votes of at least %(num)d person other than the facilitator, "
            "so that no result shows one person's card.",
            "Revealing needs the votes of at least %(num)d people other than the facilitator, "
            "so that no result shows one person's card.",
            needed,
        ),
        ngettext("%(num)d more vote is needed.", "%(num)d more votes are needed.", needed - covering),
    ]
    if lost:
        parts.append(
            ngettext(
                "%(num)d vote could not be read because the ballot key store restarted: "
                "its voter is asked to vote again.",
                "%(num)d votes could not be read because the ballot key store restarted: "
                "those voters are asked to vote again.",
                lost,
            )
        )
    return " ".join(str(part) for part in parts)


def restart(issue: Issue) -> None:
    """Start the open round over: every ballot is discarded unread and the round's key destroyed,
    so nobody, the facilitator included, ever learns what was cast; everyone votes again."""
    lock_group(issue.group_id)
    if issue.state != IssueState.VOTING:
        raise RuleError(_("This round is already revealed: start a new one with “Vote again”."))
    round_ = issue.current_round
    for ballot in list(round_.ballots):
        db.session.delete(ballot)
    if round_.key_id is not None:
        ballot_keys.store.destroy(round_.key_id)
    round_.key_id = round_.key_store = round_.min_votes = round_.timer_ends_at = round_.nudged_at = None
    round_.deck = round_.cards = None  # the next first ballot is cast with the group's deck of then
    round_.restarts += 1
    round_.opened_at = None  # until the next first ballot
    bump_version(issue.group_id)


def accept(issue: Issue, estimate: str) -> None:
    """Record the team's final estimate for a revealed issue (it may be changed later)."""
    change_group(issue.group_id)
    if issue.state == IssueState.VOTING:
        raise RuleError(_("Reveal the votes before recording a final estimate."))
    issue.final_estimate = estimate
    issue.state = IssueState.ESTIMATED


def revote(issue: Issue) -> Round:
    """Open a new round; the earlier ones stay as anonymous history."""
    change_group(issue.group_id)
    if issue.state == IssueState.VOTING:
        raise RuleError(_("This round is still open: reveal it before starting another."))
    return _open_round(issue)


def _open_round(issue: Issue) -> Round:
    """Open the issue's next round; the earlier ones stay as anonymous history."""
    new_round = Round(number=issue.current_round.number + 1)
    issue.rounds.append(new_round)
    issue.state = IssueState.VOTING
    issue.final_estimate = None
    return new_round


def start(issue: Issue) -> None:
    """Make the issue the room's current one; an estimated issue is re-opened for a new round."""
    change_group(issue.group_id)
    if issue.state == IssueState.ESTIMATED:
        _open_round(issue)
    issue.group.current_issue = issue


def next_issue(group: Group) -> Issue | None:
    """Move the room to the first issue after the current one, in backlog order, that is not yet
    estimated, wrapping round (the current one comes last); None when every issue is estimated."""
    change_group(group.id)
    issues = list(group.issues)
    after = issues.index(group.current_issue) + 1 if group.current_issue in issues else 0
    waiting = [i for i in issues[after:] + issues[:after] if i.state != IssueState.ESTIMATED]
    group.current_issue = waiting[0] if waiting else None
    return group.current_issue


def set_timer(issue: Issue, seconds: int) -> datetime | None:
    """Start a countdown of `seconds` for the open round, or stop it with 0; returns its end."""
    change_group(issue.group_id)
    if issue.state != IssueState.VOTING:
        raise RuleError(_("The timer runs while the team votes: this round is already revealed."))
    issue.current_round.timer_ends_at = utcnow() + timedelta(seconds=seconds) if seconds else None
    return issue.current_round.timer_ends_at

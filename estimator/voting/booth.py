"""What a vote reads: the issue's open round and the voter's place in its group, in one query.

Votes come by the hundred a second in a big meeting, so a vote reads plain rows under its group's
lock instead of loading the issue's objects: the lock, one read, and the writes (rules.cast_vote).
The read also checks the login the session cookie claims, so a vote loads no user either.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import aliased, joinedload

from ..auth.session import Claim
from ..database import hold_sqlite_write_lock, holding, read_in_autocommit, read_rows, write_in_transaction
from ..estimates import Deck, deck_named
from ..extensions import db
from ..models import Ballot, Group, Issue, Membership, Role, Round, User, takes_part


@dataclass(frozen=True)
class Booth:
    """An issue's open round as one voter finds it, read under the group's lock."""

    issue_id: int
    group_id: int
    voter_id: int
    #: Whether the claimed login holds: the user exists and the token is still theirs.
    logged_in: bool
    state: str
    deck: Deck
    auto_reveal: bool
    #: The group's reveal threshold now, and the one the round's first ballot was cast under.
    group_min_votes: int
    round_min_votes: int | None
    #: Whether the round has a deck of its own yet (a round voted in before rounds kept their deck
    #: may have its threshold fixed and no deck: its next vote gives it the deck read here).
    round_deck_fixed: bool
    round_id: int
    key_id: str | None
    #: The identity of the key store that made the round's key (None for rounds keyed before it was kept).
    key_store: str | None
    #: The voter's role in the group, None when they are not a member.
    role: str | None
    facilitator_votes: bool
    #: Whether the voter has a ballot in the round, and its sealed card (None once lost).
    has_ballot: bool
    sealed: bytes | None
    #: Whether any ballot of the round holds a sealed card.
    any_sealed: bool
    #: The group's version as read, and whether it was read at a glance, without the group's
    #: lock: a vote cast from a glance writes only if the version is still this one.
    version: int = 0
    glanced: bool = False

    @property
    def votes(self) -> bool:
        """Whether the voter gives estimates in this group (as Membership.votes)."""
        return self.role is not None and takes_part(self.role, self.facilitator_votes)

    @property
    def is_owner(self) -> bool:
        """Whether the voter facilitates the group."""
        return self.role == Role.OWNER


_own = aliased(Ballot)
_read = aliased(Group)
_BOOTH = (
    sa.select(
        Issue.group_id,
        Issue.state,
        # The round's own deck once voted in, else the group's (Round.deck_rules).
        sa.func.coalesce(Round.deck, Group.deck),
        sa.case((Round.deck.is_(None), Group.cards), else_=Round.cards),
        Round.deck.is_not(None),
        Group.auto_reveal,
        Group.min_votes,
        Round.min_votes,
        Round.id,
        Round.key_id,
        Round.key_store,
        Membership.role,
        Group.facilitator_votes,
        _own.id,
        _own.sealed,
        sa.exists().where(Ballot.round_id == Round.id, Ballot.sealed.is_not(None)),
        sa.select(User.session_token).where(User.id == sa.bindparam("user_id")).scalar_subquery(),
        Group.version.label("locked_version"),
        sa.select(_read.version).where(_read.id == Group.id).scalar_subquery().label("read_version"),
    )
    .select_from(Issue)
    .join(Group, Group.id == Issue.group_id)
    .join(Round, Round.issue_id == Issue.id)
    .outerjoin(
        Membership, (Membership.group_id == Group.id) & (Membership.user_id == sa.bindparam("user_id"))
    )
    .outerjoin(_own, (_own.round_id == Round.id) & (_own.user_id == sa.bindparam("user_id")))
    .where(Issue.id == sa.bindparam("issue_id"))
    .order_by(Round.number.desc())
    .limit(1)
)
#: The same read on PostgreSQL, taking the group's row lock as it reads (one round trip, not two).
_LOCKING_BOOTH = _BOOTH.with_for_update(of=Group)


def open_booth(issue_id: int, voter: Claim, *, glance: bool = False) -> Booth | None:
    """Read what a vote by the claimed login checks, holding the issue's group's lock unless at a
    glance; None without the issue. Only a booth that is `logged_in` speaks of a user: any other
    is no login at all.

    A `glance` on PostgreSQL reads the same without the lock, in autocommit (one round trip, no
    BEGIN): most votes then write in one guarded statement (rules.cast_vote), and any other, or
    one whose group changed in between, opens the booth again with the lock.

    On PostgreSQL the read takes the lock itself. Under READ COMMITTED a statement that waits for
    a row lock returns the locked row as the other transaction left it, but every other row as
    its snapshot, taken before the wait, saw them. So the read also returns the group's version
    as that snapshot saw it: when it differs from the locked row's, another change to the group
    was committed meanwhile (every change bumps the version but a changed card, which no vote
    reads), and the booth is read again under the lock now held. On SQLite the write lock is
    taken first and holds every group.
    """
    values = {"issue_id": issue_id, "user_id": voter.user_id}
    connection = db.session.connection()
    if connection.dialect.name == "postgresql" and glance and read_in_autocommit(connection):
        rows = read_rows(connection, _BOOTH, values)
        locked, glanced = False, True
    elif connection.dialect.name == "postgresql":
        write_in_transaction(connection)
        rows = read_rows(connection, _LOCKING_BOOTH, values)
        if rows and rows[0][-2] != rows[0][-1]:  # the locked row's version is not the one read
            rows = read_rows(connection, _BOOTH, values)
        locked, glanced = True, False
    else:
        locked, glanced = hold_sqlite_write_lock(), False
        rows = read_rows(connection, _BOOTH, values)
    if not rows:
        return None
    (group_id, state, deck, cards, deck_fixed, auto_reveal, group_min, round_min, round_id, key_id,
     key_store, role, facilitator_votes, ballot_id, sealed, any_sealed, token, version,
     _read_version) = rows[0]  # fmt: skip
    if locked:
        holding(group_id)
    return Booth(
        issue_id=issue_id,
        group_id=group_id,
        voter_id=voter.user_id,
        logged_in=token is not None and secrets.compare_digest(token, voter.token),
        state=state,
        deck=deck_named(deck, cards),
        auto_reveal=auto_reveal,
        group_min_votes=group_min,
        round_min_votes=round_min,
        round_deck_fixed=bool(deck_fixed),
        round_id=round_id,
        key_id=key_id,
        key_store=key_store,
        role=role,
        facilitator_votes=facilitator_votes,
        has_ballot=ballot_id is not None,
        sealed=sealed,
        any_sealed=bool(any_sealed),
        version=int(version),
        glanced=glanced,
    )


def load_issue_to_vote(issue_id: int) -> Issue | None:
    """The issue with what an automatic reveal reads: its group, its rounds and their ballots, in
    one query (members are read when asked for)."""
    return (
        db.session.scalars(
            sa.select(Issue)
            .where(Issue.id == issue_id)
            .options(joinedload(Issue.group), joinedload(Issue.rounds).joinedload(Round.ballots))
        )
        .unique()
        .first()
    )

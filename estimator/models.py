"""Database models.

Anonymity lives in the schema: a `Ballot` ties a voter to a card only while its round is open.
At reveal the cards are counted into `Tally` rows (card → how many, no voter) and every ballot's
card is cleared in the same transaction, so afterwards no row links a value to a person.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .estimates import DECK_NAMES, Deck, deck_named
from .extensions import db

MIN_VOTES_DEFAULT, MIN_VOTES_SAFE, MIN_VOTES_MAX = 3, 3, 20
#: The trackers a group can connect to (estimator/trackers has a connector for each).
TRACKER_KINDS = ("jira", "redmine", "gitlab")


class Role(StrEnum):
    """A member's place in a group."""

    OWNER = "owner"  # the facilitator
    MEMBER = "member"
    OBSERVER = "observer"


class IssueState(StrEnum):
    """Where an issue is: voting → revealed → estimated (a re-vote goes back to voting)."""

    VOTING = "voting"
    REVEALED = "revealed"
    ESTIMATED = "estimated"


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def new_token() -> str:
    """A URL-safe random token with 256 bits of randomness."""
    return secrets.token_urlsafe(32)


class User(UserMixin, db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """A person, known by a nickname that is unique regardless of case and of look-alikes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: As first spelled (see estimator/auth/nicknames.py for the rules).
    nickname: Mapped[str] = mapped_column(sa.String(32))
    #: The nickname folded for comparison; the unique constraint makes concurrent sign-ups safe.
    nickname_key: Mapped[str] = mapped_column(sa.Text, unique=True)
    #: What the nickname looks like (Unicode TR39 skeleton, case folded): no look-alike of it can
    #: be created, whichever request gets there first.  A unique index rather than a constraint,
    #: which SQLite could only add by rebuilding the table.
    nickname_skeleton: Mapped[str] = mapped_column(sa.Text, unique=True, index=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    #: Part of the login cookie; changing it signs out every copy of that cookie.
    session_token: Mapped[str] = mapped_column(sa.String(64), default=new_token)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    def get_id(self) -> str:
        """Flask-Login's cookie value: the id and the current session token."""
        return f"{self.id}:{self.session_token}"

    @property
    def has_password(self) -> bool:
        """Whether this nickname is protected by a password."""
        return self.password_hash is not None


class Claim(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """That a browser holds a nickname: the hash of the secret in that browser's claim cookie.

    One browser can hold several nicknames, and a nickname with a password several browsers.
    Only the hash is stored, so the database cannot be used to impersonate a browser.
    """

    __tablename__ = "claims"
    __table_args__ = (sa.UniqueConstraint("user_id", "secret_hash", name="uq_claims_user_secret"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    #: SHA-256 of the browser's secret, in hex.
    secret_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class Group(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """A team estimating together with one deck."""

    __tablename__ = "groups"
    __table_args__ = (
        sa.CheckConstraint(sa.column("deck").in_(list(DECK_NAMES)), name="deck"),
        sa.CheckConstraint(f"min_votes BETWEEN 1 AND {MIN_VOTES_MAX}", name="min_votes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    deck: Mapped[str] = mapped_column(sa.String(16))
    #: The labels of a custom deck, separated by spaces; None for the other decks.
    cards: Mapped[str | None] = mapped_column(sa.String(200))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    invite_token: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_token)
    #: Bumped by every change anyone can see; live pages poll it through the ETag.
    version: Mapped[int] = mapped_column(default=1)
    #: How many of those bumps were a vote, a change of one open round alone: versions whose
    #: `version - vote_versions` is the same differ only in their rounds' votes (live/reuse.py).
    vote_versions: Mapped[int] = mapped_column(default=0, server_default="0")
    #: A round is revealed only with at least this many numeric votes, so no result shows one card.
    min_votes: Mapped[int] = mapped_column(default=MIN_VOTES_DEFAULT, server_default=str(MIN_VOTES_DEFAULT))
    #: The vote that completes a round reveals it, in the same transaction (when the threshold is met).
    auto_reveal: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    #: Whether the facilitator is one of the voters; without it they only facilitate.
    facilitator_votes: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    #: "Everybody voted" and auto-reveal wait only for the voters who have the group open now.
    present_only: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    #: The issue the room is on: everybody's screen follows it. None before the first and after the last.
    current_issue_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey(
            "issues.id", ondelete="SET NULL", use_alter=True, name="fk_groups_current_issue_id_issues"
        )
    )
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    owner: Mapped[User] = relationship()
    current_issue: Mapped[Issue | None] = relationship(foreign_keys=[current_issue_id], post_update=True)
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="Membership.id"
    )
    issues: Mapped[list[Issue]] = relationship(
        back_populates="group",
        cascade="all, delete-orphan",
        order_by="(Issue.position, Issue.id)",
        foreign_keys="Issue.group_id",
    )
    tracker: Mapped[TrackerConnection | None] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def deck_rules(self) -> Deck:
        """The deck's cards and rules."""
        return deck_named(self.deck, self.cards)


def takes_part(role: str, facilitator_votes: bool) -> bool:
    """Whether a member in this role gives estimates: members do, observers never, the facilitator
    unless the group's settings say they only facilitate."""
    if role == Role.OWNER:
        return facilitator_votes
    return role == Role.MEMBER


class Membership(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """A user's place in a group: owner, member (votes) or observer (watches)."""

    __tablename__ = "memberships"
    __table_args__ = (
        sa.UniqueConstraint("group_id", "user_id", name="uq_memberships_group_user"),
        sa.CheckConstraint(sa.column("role").in_([r.value for r in Role]), name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    joined_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    group: Mapped[Group] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship()

    @property
    def votes(self) -> bool:
        """Whether this member gives estimates (see takes_part)."""
        return takes_part(self.role, self.group.facilitator_votes)

    @property
    def is_owner(self) -> bool:
        """Whether this member facilitates the group."""
        return self.role == Role.OWNER


class Issue(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """A piece of work the group estimates, in one or more rounds."""

    __tablename__ = "issues"
    __table_args__ = (
        sa.UniqueConstraint("group_id", "key", name="uq_issues_group_key"),
        sa.CheckConstraint(sa.column("state").in_([s.value for s in IssueState]), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(32))
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    #: The tracker's long description, as plain text (never rendered as HTML): what a file or a
    #: tracker brought beside the short title in `description`; "" for issues typed in here.
    details: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Backlog order within the group: new issues go to the end; the facilitator moves them.
    position: Mapped[int] = mapped_column(default=0, server_default="0")
    state: Mapped[str] = mapped_column(sa.String(16), default=IssueState.VOTING)
    final_estimate: Mapped[str | None] = mapped_column(sa.String(16))
    #: Where the issue came from in the group's connected tracker (what its connector needs to write
    #: the final estimate back: an id, `project:iid`…); None for issues typed or imported from a file.
    tracker_ref: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    group: Mapped[Group] = relationship(back_populates="issues", foreign_keys=[group_id])
    rounds: Mapped[list[Round]] = relationship(
        back_populates="issue", cascade="all, delete-orphan", order_by="Round.number"
    )

    @property
    def current_round(self) -> Round:
        """The latest round; every issue has at least one."""
        return self.rounds[-1]

    @property
    def deck_rules(self) -> Deck:
        """The deck of its latest round: what its voters vote with and its estimate is one of."""
        return self.current_round.deck_rules(self.group)


class Round(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """One vote on an issue; a re-vote opens the next round."""

    __tablename__ = "rounds"
    __table_args__ = (
        sa.UniqueConstraint("issue_id", "number", name="uq_rounds_issue_number"),
        # The few rounds whose ballot key exists (open, with votes), by issue: what the group page,
        # the polls and the version watcher look up among a group's issues.
        sa.Index(
            "ix_rounds_keyed_issue",
            "issue_id",
            postgresql_where=sa.text("key_id IS NOT NULL"),
            sqlite_where=sa.text("key_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(sa.ForeignKey("issues.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(default=1)
    revealed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: When the facilitator's countdown for this open round runs out; None when no timer runs.
    timer_ends_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: Names this round's ballot key in the key store (not the key: that never reaches the database).
    key_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: The identity of the key store that made the key (KeyStore.identity): a server that finds the
    #: key missing in its own store can tell a lost key from one held by a store it does not share.
    key_store: Mapped[str | None] = mapped_column(sa.String(100))
    #: The group's threshold when the first ballot was cast: lowering it later cannot expose a card
    #: that was cast under the promise of a higher one (settings apply from the next round).
    min_votes: Mapped[int | None] = mapped_column()
    #: Ballots that could not be read at the reveal because their key was lost, left out of the result.
    lost_ballots: Mapped[int] = mapped_column(default=0, server_default="0")
    #: When the round's first ballot was cast (since its last restart); None before. Voters who
    #: joined the group since are marked in the voters list.
    opened_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: How often the facilitator started this round over, every open ballot discarded unread.
    restarts: Mapped[int] = mapped_column(default=0, server_default="0")
    #: When the facilitator last nudged the voters who had not voted yet; None before.
    nudged_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: The deck (and a custom deck's cards) the round's first ballot was cast with; None before, when
    #: the round follows the group's deck: a deck changed in the settings applies from the next
    #: round, and a revealed round's result always reads with the deck it was voted with.
    deck: Mapped[str | None] = mapped_column(sa.String(16))
    cards: Mapped[str | None] = mapped_column(sa.String(200))

    issue: Mapped[Issue] = relationship(back_populates="rounds")
    ballots: Mapped[list[Ballot]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="Ballot.id"
    )
    tallies: Mapped[list[Tally]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="Tally.id"
    )

    @property
    def revealed(self) -> bool:
        """Whether this round's result has been shown."""
        return self.revealed_at is not None

    def deck_rules(self, group: Group) -> Deck:
        """The deck this round is voted with: its own once voted in, else its group's."""
        return deck_named(self.deck, self.cards) if self.deck else group.deck_rules


class Ballot(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """That a voter took part in a round, with their card sealed until the reveal.

    The card is only ever stored encrypted under the round's key, which lives outside the
    database and is destroyed at the reveal (see sealing.py and voting/rules.py).
    """

    __tablename__ = "ballots"
    __table_args__ = (sa.UniqueConstraint("round_id", "user_id", name="uq_ballots_round_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The sealed card while the round is open; NULL after the reveal (the link is gone for good),
    #: and NULL in an open round when the round's key was lost: the voter is asked to vote again.
    sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary())

    round: Mapped[Round] = relationship(back_populates="ballots")
    user: Mapped[User] = relationship()


class Tally(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """How many voters of a revealed round chose a card; no voter is named."""

    __tablename__ = "tallies"
    __table_args__ = (
        sa.UniqueConstraint("round_id", "card", name="uq_tallies_round_card"),
        sa.CheckConstraint("count > 0", name="count_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    card: Mapped[str] = mapped_column(sa.String(8))
    count: Mapped[int]

    round: Mapped[Round] = relationship(back_populates="tallies")


class TrackerConnection(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """A group's issue tracker: where issues are imported from and final estimates are sent to.

    One per group. The credentials are kept only encrypted (estimator/trackers/vault.py), under a
    key that lives in the environment and never in the database, bound to this group: a copy of
    the database alone tells nobody the tracker's token, and a sealed credential moved to another
    group's row does not open.
    """

    __tablename__ = "tracker_connections"
    __table_args__ = (sa.CheckConstraint(sa.column("kind").in_(TRACKER_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"), unique=True)
    #: Which connector talks to it: "jira", "redmine", "gitlab".
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: The tracker's address as the facilitator gave it, without a trailing slash.
    base_url: Mapped[str] = mapped_column(sa.String(500))
    #: The credentials (a JSON object: `token`, and `email` where the tracker wants one), sealed.
    credentials: Mapped[bytes] = mapped_column(sa.LargeBinary())
    #: The field that receives the final estimate (EstimateField.id); None until one is chosen.
    estimate_field: Mapped[str | None] = mapped_column(sa.String(100))
    #: Its name as the tracker gave it, for the pages.
    estimate_field_label: Mapped[str | None] = mapped_column(sa.String(200))
    #: Recording a final estimate sends it at once.
    send_automatically: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    #: The last query imported, offered again next time.
    last_query: Mapped[str | None] = mapped_column(sa.String(2000))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    group: Mapped[Group] = relationship(back_populates="tracker")


class Instance(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """A serving process and what it serves with, refreshed while it runs (see instances.py): the
    processes of one database must share one secret key and one ballot key store."""

    __tablename__ = "instances"

    #: Random, one per process.
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    #: HMAC-SHA256 of a fixed text under SECRET_KEY: equal secrets give equal fingerprints, and the
    #: fingerprint tells nothing of the secret.
    secret_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    #: The ballot key store's identity (KeyStore.identity), None while it could not be asked.
    key_store: Mapped[str | None] = mapped_column(sa.String(100))
    #: BALLOT_KEY_STORE_URI as this process read it, without a password: what a message names.
    key_store_uri: Mapped[str] = mapped_column(sa.Text)
    #: The heartbeat: the last time the process said it is serving.
    seen_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


class Presence(db.Model):  # type: ignore[name-defined]  # db.Model is made at runtime
    """That a member has a live page of a group open in one serving process (see live/presence.py).

    Each process writes and refreshes only its own rows; a row not refreshed for a while (its
    process died) is removed by whichever process looks next. It says nothing of any card.
    """

    __tablename__ = "presences"

    group_id: Mapped[int] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    #: The serving process, random, one per process.
    instance: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)

"""Nickname claims and confusable skeletons.

A nickname now belongs to the browser that first used it (`claims`), and no nickname can be
created that looks like a taken one (`users.nickname_skeleton`, unique).  Keys are recomputed
with the PRECIS nickname profile.  Users from before keep their nicknames; where two of them look
alike, the older keeps the plain skeleton and each later one gets it suffixed with "#<id>" (a
line per clash is printed), so nobody is locked out and nobody new can add a third.

Users from before have no claim: the first browser that logs in with a password-less one claims
it (see estimator/auth/claims.py, `may_use_without_password`).

The users table is changed only with statements SQLite runs in place (add a column, create an
index): rebuilding it, as a batch migration would, drops the table with foreign keys on, which
would cascade into everybody's memberships and ballots.

Revision ID: 4f1c2a9e7b10
Revises: 13c89b68bf3a
Create Date: 2026-11-21 11:40:00
"""

import sqlalchemy as sa
from alembic import op

from estimator.auth.nicknames import nickname_key, nickname_skeleton

revision = "4f1c2a9e7b10"
down_revision = "13c89b68bf3a"
branch_labels = None
depends_on = None

users = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("nickname", sa.String),
    sa.column("nickname_key", sa.Text),
    sa.column("nickname_skeleton", sa.Text),
)


def upgrade() -> None:
    """Add the claims table and the skeleton; fill in keys and skeletons of existing users."""
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_claims_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
        sa.UniqueConstraint("user_id", "secret_hash", name="uq_claims_user_secret"),
    )
    # NOT NULL needs a default for the rows already there; every insert names the skeleton.
    op.add_column("users", sa.Column("nickname_skeleton", sa.Text(), nullable=False, server_default=""))
    fill_keys_and_skeletons(op.get_bind())
    op.create_index(op.f("ix_users_nickname_skeleton"), "users", ["nickname_skeleton"], unique=True)
    if op.get_bind().dialect.name != "sqlite":  # SQLite drops a default only by rebuilding the table
        op.alter_column("users", "nickname_skeleton", server_default=None)


def fill_keys_and_skeletons(connection: sa.Connection) -> None:
    """Compute every user's key and skeleton, oldest first; later look-alikes get a suffix."""
    rows = connection.execute(
        sa.select(users.c.id, users.c.nickname, users.c.nickname_key).order_by(users.c.id)
    ).all()
    keys: dict[str, tuple[int, str]] = {}
    skeletons: dict[str, tuple[int, str]] = {}
    changes = []
    for user_id, nickname, old_key in rows:
        key = _new_key(nickname, old_key)
        if key in keys:  # the new rules fold two old nicknames together: the later keeps its old key
            _report(user_id, nickname, keys[key], "the same nickname")
            key = old_key if old_key not in keys else f"{old_key}#{user_id}"
        keys[key] = (user_id, nickname)
        skeleton = nickname_skeleton(nickname)
        if skeleton in skeletons:
            _report(user_id, nickname, skeletons[skeleton], "a look-alike")
            skeleton = f"{skeleton}#{user_id}"
        skeletons[skeleton] = (user_id, nickname)
        changes.append((user_id, old_key, key, skeleton))
    for user_id, old_key, key, _ in changes:  # out of the way first: keys are unique at all times
        if key != old_key:
            connection.execute(
                sa.update(users).where(users.c.id == user_id).values(nickname_key=f"#{user_id}")
            )
    for user_id, _, key, skeleton in changes:
        connection.execute(
            sa.update(users).where(users.c.id == user_id).values(nickname_key=key, nickname_skeleton=skeleton)
        )


def _new_key(nickname: str, old_key: str) -> str:
    """The nickname's key by the current rules; the old one if those refuse the nickname."""
    try:
        return nickname_key(nickname)
    except UnicodeError:  # an invisible or unassigned character the old rules let through
        return old_key


def _report(user_id: int, nickname: str, older: tuple[int, str], what: str) -> None:
    """One line per clash, for whoever runs the upgrade."""
    older_id, older_nickname = older
    print(
        f"nickname clash: user {user_id} {nickname!r} is {what} of user {older_id} {older_nickname!r}; "
        f"both kept, user {older_id} keeps the plain form"
    )


def downgrade() -> None:
    """Drop the claims and the skeleton; the keys stay as recomputed."""
    op.drop_index(op.f("ix_users_nickname_skeleton"), table_name="users")
    op.drop_column("users", "nickname_skeleton")
    op.drop_table("claims")

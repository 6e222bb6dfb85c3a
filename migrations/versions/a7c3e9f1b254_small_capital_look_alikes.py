"""Look-alike skeletons that also see small capitals and "vv".

`users.nickname_skeleton` is recomputed with the rules of estimator.text.looks, which now read
small capitals ("ᴘia") as the capitals they are drawn as and "vv" as "w". Users from before keep
their nicknames; where two of them now look alike, the older keeps the plain skeleton and each
later one gets it suffixed with "#<id>" (a line per clash is printed), as in 4f1c2a9e7b10.

Revision ID: a7c3e9f1b254
Revises: a7c3e9f1b5d2
Create Date: 2026-12-07 10:40:00
"""

import sqlalchemy as sa
from alembic import op

from estimator.auth.nicknames import nickname_skeleton

revision = "a7c3e9f1b254"
down_revision = "a7c3e9f1b5d2"
branch_labels = None
depends_on = None

users = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("nickname", sa.String),
    sa.column("nickname_skeleton", sa.Text),
)


def upgrade() -> None:
    """Recompute every skeleton, oldest user first; a later look-alike gets a suffix."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(users.c.id, users.c.nickname, users.c.nickname_skeleton).order_by(users.c.id)
    ).all()
    seen: dict[str, tuple[int, str]] = {}
    changes = []
    for user_id, nickname, old in rows:
        skeleton = nickname_skeleton(nickname)
        if skeleton in seen:
            older_id, older_nickname = seen[skeleton]
            print(
                f"nickname clash: user {user_id} {nickname!r} is a look-alike of user {older_id} "
                f"{older_nickname!r}; both kept, user {older_id} keeps the plain form"
            )
            skeleton = f"{skeleton}#{user_id}"
        seen[skeleton] = (user_id, nickname)
        if skeleton != old:
            changes.append((user_id, skeleton))
    # Out of the way first: skeletons are unique at all times, and "#<id>" is nobody's.
    for user_id, _ in changes:
        connection.execute(
            sa.update(users).where(users.c.id == user_id).values(nickname_skeleton=f"#{user_id}")
        )
    for user_id, skeleton in changes:
        connection.execute(sa.update(users).where(users.c.id == user_id).values(nickname_skeleton=skeleton))


def downgrade() -> None:
    """Nothing to undo: the skeletons stay as recomputed, which only refuses more look-alikes."""

"""How many of a group's versions were a vote.

`groups.vote_versions` is bumped with the version by every vote, which changes one open round (its
ballots, and its key and settings with its first ballot) and nothing else (live/reuse.py): two
versions whose difference from it is the same differ only in their rounds' votes, so a live page's
build can keep what it loaded of the group and read the voted round again. Existing groups start
at 0: every version so far counts as a change of anything.

Revision ID: b6e2d4f8a1c3
Revises: f3b7d1e5a9c2
Create Date: 2026-12-07 23:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b6e2d4f8a1c3"
down_revision = "f3b7d1e5a9c2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """A column SQLite adds in place: no table is rebuilt."""
    op.add_column("groups", sa.Column("vote_versions", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("vote_versions")

"""Sealed ballots and the reveal threshold.

Ballots keep their card only as ciphertext under a key that lives outside the database; rounds
name that key; groups get `min_votes`. Cards of open rounds stored in plain text before this
revision are dropped, not carried over: their voters are asked to vote again.

Revision ID: 7d2e5b8c3a41
Revises: 4f1c2a9e7b10
Create Date: 2026-11-21 12:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "7d2e5b8c3a41"
down_revision = "4f1c2a9e7b10"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the sealed card, the round's key id and lost count, and the group's threshold."""
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("min_votes", sa.Integer(), nullable=False, server_default="3"))
        batch.create_check_constraint("min_votes", "min_votes BETWEEN 1 AND 20")
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("min_votes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lost_ballots", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("ballots") as batch:
        batch.drop_column("card")
        batch.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Remove them again; sealed cards cannot be turned back into plain text and are dropped."""
    with op.batch_alter_table("ballots") as batch:
        batch.drop_column("sealed")
        batch.add_column(sa.Column("card", sa.String(length=8), nullable=True))
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("lost_ballots")
        batch.drop_column("key_id")
        batch.drop_column("min_votes")
    with op.batch_alter_table("groups") as batch:
        batch.drop_constraint(op.f("ck_groups_min_votes"), type_="check")
        batch.drop_column("min_votes")

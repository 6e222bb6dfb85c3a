"""The backlog: issue order and custom decks.

Revision ID: c5a8e2f41d3b
Revises: 9b3f6d1e2c57
Create Date: 2026-11-21 12:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "c5a8e2f41d3b"
down_revision = "9b3f6d1e2c57"
branch_labels = None
depends_on = None

DECKS = ("range", "fibonacci", "modified", "tshirt", "powers")


def upgrade() -> None:
    """Add issue positions (the existing order: by id), a group's own cards and the custom deck."""
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE issues SET position = id")
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("cards", sa.String(length=200), nullable=True))
        batch.drop_constraint(op.f("ck_groups_deck"), type_="check")
        batch.create_check_constraint("deck", sa.column("deck").in_([*DECKS, "custom"]))


def downgrade() -> None:
    """Remove them again; groups with their own cards go back to the range deck."""
    op.execute("UPDATE groups SET deck = 'range' WHERE deck = 'custom'")
    with op.batch_alter_table("groups") as batch:
        batch.drop_constraint(op.f("ck_groups_deck"), type_="check")
        batch.create_check_constraint("deck", sa.column("deck").in_(DECKS))
        batch.drop_column("cards")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("position")

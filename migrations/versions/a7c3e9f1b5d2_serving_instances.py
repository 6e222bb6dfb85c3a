"""The serving instances and the key store that made each round's key.

Revision ID: a7c3e9f1b5d2
Revises: e4a1c7b9d2f3
Create Date: 2026-12-07 10:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "a7c3e9f1b5d2"
down_revision = "e4a1c7b9d2f3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Servers record what they serve with, so that one with another secret or another key store is
    refused at start; rounds record which store made their key (NULL for rounds keyed before)."""
    op.create_table(
        "instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("secret_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("key_store", sa.String(length=100), nullable=True),
        sa.Column("key_store_uri", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
    )
    op.create_index(op.f("ix_instances_seen_at"), "instances", ["seen_at"], unique=False)
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("key_store", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("key_store")
    op.drop_index(op.f("ix_instances_seen_at"), table_name="instances")
    op.drop_table("instances")

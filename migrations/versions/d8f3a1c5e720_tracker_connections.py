"""A group's connection to its issue tracker, and where an imported issue came from.

`tracker_connections` holds one tracker per group, its credentials encrypted under a key that is
kept in the environment; `issues.tracker_ref` says which issue of that tracker an issue is, so
that its final estimate can be sent back.

Revision ID: d8f3a1c5e720
Revises: f3b7d9e1a5c4
Create Date: 2026-12-07 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "d8f3a1c5e720"
down_revision = "f3b7d9e1a5c4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """A new table, and a column SQLite adds in place."""
    op.create_table(
        "tracker_connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("credentials", sa.LargeBinary(), nullable=False),
        sa.Column("estimate_field", sa.String(length=100), nullable=True),
        sa.Column("estimate_field_label", sa.String(length=200), nullable=True),
        sa.Column("send_automatically", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_query", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('jira', 'redmine', 'gitlab')", name=op.f("ck_tracker_connections_kind")),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_tracker_connections_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracker_connections")),
        sa.UniqueConstraint("group_id", name=op.f("uq_tracker_connections_group_id")),
    )
    op.add_column("issues", sa.Column("tracker_ref", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("tracker_ref")
    op.drop_table("tracker_connections")

"""The room: the group's current issue, auto-reveal, whether the facilitator votes, round timers.

Revision ID: 9b3f6d1e2c57
Revises: 7d2e5b8c3a41
Create Date: 2026-11-21 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "9b3f6d1e2c57"
down_revision = "7d2e5b8c3a41"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the room's columns to groups and rounds."""
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("auto_reveal", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(
            sa.Column("facilitator_votes", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("current_issue_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_groups_current_issue_id_issues", "issues", ["current_issue_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("timer_ends_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Remove them again."""
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("timer_ends_at")
    with op.batch_alter_table("groups") as batch:
        batch.drop_constraint("fk_groups_current_issue_id_issues", type_="foreignkey")
        batch.drop_column("current_issue_id")
        batch.drop_column("facilitator_votes")
        batch.drop_column("auto_reveal")

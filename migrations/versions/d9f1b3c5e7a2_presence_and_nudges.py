"""Who has the group open now, the facilitator's nudge, and the setting that waits only for them.

`presences` holds one row per member and serving process that has a live page of the group open;
`groups.present_only` lets "everybody voted" and auto-reveal wait only for voters present;
`rounds.nudged_at` is when the facilitator last nudged those who had not voted.

Revision ID: d9f1b3c5e7a2
Revises: c2e8d4a6f913
Create Date: 2026-12-07 13:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "d9f1b3c5e7a2"
down_revision = "c2e8d4a6f913"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "presences",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_presences_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_presences_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", "instance", name=op.f("pk_presences")),
    )
    op.create_index(op.f("ix_presences_seen_at"), "presences", ["seen_at"])
    op.add_column(
        "groups", sa.Column("present_only", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("rounds", sa.Column("nudged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("nudged_at")
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("present_only")
    op.drop_index(op.f("ix_presences_seen_at"), table_name="presences")
    op.drop_table("presences")

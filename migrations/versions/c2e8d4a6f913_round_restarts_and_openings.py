"""When a round's voting began, and how often it was started over.

`rounds.opened_at` (its first ballot) lets the voters list mark people who joined the group while
the round was being voted on (rounds from before have none: nobody is marked there);
`rounds.restarts` counts how often the
facilitator started the round over, which pages use to tell every voter to vote again.

Revision ID: c2e8d4a6f913
Revises: a7c3e9f1b254
Create Date: 2026-12-07 11:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "c2e8d4a6f913"
down_revision = "a7c3e9f1b254"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Two columns SQLite adds in place: no table is rebuilt."""
    op.add_column("rounds", sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("rounds", sa.Column("restarts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("restarts")
        batch.drop_column("opened_at")

"""The deck of each round, so that a group's deck can change from the next round on.

A round's first ballot now records the deck it was cast with (`rounds.deck`, and `rounds.cards`
for a custom deck); a round nobody has voted in follows its group's deck. Rounds that already have
ballots or a result get their group's deck of now, which is the one they were voted with: until
now a group's deck never changed.

Revision ID: f3b7d9e1a5c4
Revises: d9f1b3c5e7a2
Create Date: 2026-12-07 13:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "f3b7d9e1a5c4"
down_revision = "d9f1b3c5e7a2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rounds", sa.Column("deck", sa.String(length=16), nullable=True))
    op.add_column("rounds", sa.Column("cards", sa.String(length=200), nullable=True))
    op.execute(
        """
        UPDATE rounds SET
          deck = (SELECT g.deck FROM issues i JOIN groups g ON g.id = i.group_id
                  WHERE i.id = rounds.issue_id),
          cards = (SELECT g.cards FROM issues i JOIN groups g ON g.id = i.group_id
                   WHERE i.id = rounds.issue_id)
        WHERE revealed_at IS NOT NULL OR EXISTS (SELECT 1 FROM ballots b WHERE b.round_id = rounds.id)
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("cards")
        batch.drop_column("deck")

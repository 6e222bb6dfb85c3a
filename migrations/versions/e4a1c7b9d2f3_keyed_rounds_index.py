"""An index of the rounds whose ballot key exists.

Revision ID: e4a1c7b9d2f3
Revises: c5a8e2f41d3b
Create Date: 2026-11-22 09:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "e4a1c7b9d2f3"
down_revision = "c5a8e2f41d3b"
branch_labels = None
depends_on = None

KEYED = sa.text("key_id IS NOT NULL")


def upgrade() -> None:
    """Index the open rounds that have votes by issue. Which of a group's rounds hold a key was
    looked up in the index of every round of its issues, or by reading the whole table (the plan
    PostgreSQL chose for a few thousand rounds: twice the time of the rest of the group page's
    query); revealed and empty rounds, nearly all of them, are not in this one."""
    op.create_index(
        "ix_rounds_keyed_issue", "rounds", ["issue_id"], postgresql_where=KEYED, sqlite_where=KEYED
    )


def downgrade() -> None:
    op.drop_index("ix_rounds_keyed_issue", table_name="rounds")

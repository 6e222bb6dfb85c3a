"""An issue's long description from its tracker, beside the short title people estimate by.

`issues.details` holds what a Jira, GitLab, Linear, Redmine or Trello file brings as the issue's
description (plain text, at most 20,000 characters by the import's rule); issues from before have
none ("").

Revision ID: f3b7d1e5a9c2
Revises: d8f3a1c5e720
Create Date: 2026-12-07 13:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "f3b7d1e5a9c2"
down_revision = "d8f3a1c5e720"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """A column SQLite adds in place: no table is rebuilt."""
    op.add_column("issues", sa.Column("details", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("details")

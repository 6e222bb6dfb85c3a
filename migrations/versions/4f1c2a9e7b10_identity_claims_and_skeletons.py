"""Nickname claims and confusable skeletons.

Revision ID: 4f1c2a9e7b10
Revises: 13c89b68bf3a
Create Date: 2026-11-21 11:40:00
"""

revision = "4f1c2a9e7b10"
down_revision = "13c89b68bf3a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Filled in with the identity change."""


def downgrade() -> None:
    """Filled in with the identity change."""

"""The usage ledger records the inbound API each request came through (``chat``, ``messages``, ...).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Rows written before this revision all came through chat completions: the server default makes them ``chat``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode, so the same code runs on SQLite. Adding a column with a constant default needs no copy of
    # the table on either backend (SQLite's ALTER TABLE ADD COLUMN; PostgreSQL 11+ stores the default once),
    # so a large ledger is not rewritten while the gateway starts.
    with op.batch_alter_table("usage_ledger") as batch:
        batch.add_column(sa.Column("endpoint", sa.String(32), nullable=False, server_default="chat"))


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("endpoint")

"""Spend in US dollars and teams: ``teams``, USD budgets on users and keys, a user's team, each ledger row's cost.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12

Only columns that are nullable or have a constant default are added, so neither backend rewrites a table
(SQLite's ALTER TABLE ADD COLUMN; PostgreSQL 11+ keeps the default in the catalogue): ledger rows written
before this revision cost 0 and belong to no team. The new ledger index is built once, here.

US dollar amounts are ``NUMERIC(20, 6)`` on PostgreSQL and a ``BIGINT`` of micro-dollars on SQLite, which
has no exact decimal type (``store/tables.py``, ``UsdAmount``). Downgrading on SQLite copies ``users``, which
``api_keys`` references: run it with foreign keys off, as the plain ``alembic`` command does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _usd() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "teams",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("monthly_budget_usd", _usd(), nullable=True),
        sa.Column("monthly_token_budget", sa.BigInteger(), nullable=True),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
    )
    # On SQLite the foreign key is written inline (``ADD COLUMN … REFERENCES teams``): the batch mode's
    # copy of ``users`` would have to drop a table that ``api_keys`` references.
    op.add_column(
        "users",
        sa.Column("team_id", sa.String(255), sa.ForeignKey("teams.id", name="fk_users_team_id_teams"), nullable=True),
        inline_references=sqlite,
    )
    op.create_index("ix_users_team_id", "users", ["team_id"])
    op.add_column("users", sa.Column("monthly_budget_usd", _usd(), nullable=True))
    op.add_column("api_keys", sa.Column("monthly_budget_usd", _usd(), nullable=True))
    op.add_column("usage_ledger", sa.Column("cost_usd", _usd(), nullable=False, server_default=sa.text("0")))
    op.add_column("usage_ledger", sa.Column("team_id", sa.String(255), nullable=True))
    op.create_index("ix_usage_ledger_team_id", "usage_ledger", ["team_id", "month"])


def downgrade() -> None:
    op.drop_index("ix_usage_ledger_team_id", table_name="usage_ledger")
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("team_id")
        batch.drop_column("cost_usd")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("monthly_budget_usd")
    op.drop_index("ix_users_team_id", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("monthly_budget_usd")
        batch.drop_column("team_id")
    op.drop_table("teams")

"""The admin console's ledger: each row's upstream attempts, the rollups its charts read, indexes for its pages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-19

``attempts`` has a constant default, so neither backend rewrites the ledger (rows written before this revision
read 1). ``usage_hourly`` and ``usage_daily`` sum the ledger by hour, model group and deployment, and by day, user
and model group (``store/rollups.py``); they are filled here from the rows already written, and the ledger's
writer keeps them from then on. The indexes serve the Requests page's newest-first paging, alone and under a user
or key filter, each deployment's recent latencies (from the index alone), and the filters' lists of providers,
endpoints and model groups (``console/queries.py``).

Filling the rollups and building the indexes reads the whole ledger, while writes to it wait (the ledger's writer
keeps its rows queued): 10 to 30 s for a million rows on SQLite, 10 to 15 s on PostgreSQL, on a 2-core machine
(``bench/console_queries.py --index-build``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_usage_ledger_created_at": ["created_at", "id"],
    "ix_usage_ledger_user_created": ["user_id", "created_at", "id"],
    "ix_usage_ledger_key_created": ["key_id", "created_at", "id"],
    "ix_usage_ledger_deployment": ["provider", "upstream_model", "created_at", "status", "latency_ms"],
    "ix_usage_ledger_endpoint": ["endpoint"],
}


def _usd() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")


def _sums() -> list[sa.Column[Any]]:
    return [
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("spend_usd", _usd(), nullable=False),
    ]


def upgrade() -> None:
    op.add_column("usage_ledger", sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("1")))
    for name, columns in INDEXES.items():
        op.create_index(name, "usage_ledger", columns)
    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_group", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("upstream_model", sa.String(255), nullable=False),
        *_sums(),
        sa.Column("cache_hits", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("fallbacks", sa.BigInteger(), nullable=False),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("hour", "model_group", "provider", "upstream_model", name="pk_usage_hourly"),
    )
    op.create_index("ix_usage_hourly_model_group", "usage_hourly", ["model_group"])
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("model_group", sa.String(255), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        *_sums(),
        sa.PrimaryKeyConstraint("day", "user_id", "model_group", "month", name="pk_usage_daily"),
    )
    # The SQL the gateway rebuilds them with: this revision's definition of the rollups. A later revision that
    # changes them rebuilds them itself (and must then freeze a copy of this SQL here).
    from llm_gateway.store.rollups import rebuild_sql

    for statement in rebuild_sql(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_index("ix_usage_hourly_model_group", table_name="usage_hourly")
    op.drop_table("usage_hourly")
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="usage_ledger")
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("attempts")

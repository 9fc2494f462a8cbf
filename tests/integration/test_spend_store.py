"""Migration 0005 and US dollar amounts in the store: exact on both backends, a ledger upgraded with its rows,
and the ledger's month per user, key and team.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Table, insert, select, text

from llm_gateway.pricing import to_nano
from llm_gateway.store.db import HEAD_REVISION, Database, open_database
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.store.tables import ApiKey, Team, UsageRecord, User
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    sibling_database,
)
from tests.ledger_support import LEDGER, database_at, ledger_row_at_0002

pytestmark = pytest.mark.integration

MONTH = "2026-12"
AT = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
# Amounts a float cannot hold: each is read back as written, to the last micro-dollar.
AMOUNTS = [Decimal("0.000001"), Decimal("0.1"), Decimal("4999999.999999"), Decimal("123456789012.345678")]


@pytest.fixture
async def database(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:  # noqa: F811
    async with sibling_database(database_url, tmp_path) as fresh, open_database(fresh) as opened:
        yield opened


def row(number: int, **fields: object) -> UsageRow:
    values: dict[str, object] = {"request_id": f"r{number}", "user_id": "ann", "month": MONTH, "model_group": "m"}
    return UsageRow(**(values | fields))  # type: ignore[arg-type]


async def test_a_database_at_0004_with_rows_is_migrated_and_its_rows_cost_nothing(
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with database_at("0004", database_url, tmp_path) as database:
        async with database.engine.begin() as connection:
            users = [{"id": user, "created_at": AT, "updated_at": AT} for user in ("ann", "bob")]
            await connection.execute(insert(cast(Table, User.__table__)), users)
            key = {"id": "k1", "user_id": "ann", "key_hash": "h" * 64, "prefix": "sk-gw-k1", "created_at": AT}
            await connection.execute(insert(cast(Table, ApiKey.__table__)), [key])
            rows = [ledger_row_at_0002(n, user_id="ann", key_id="k1", month=MONTH, endpoint="chat") for n in (1, 2)]
            await connection.execute(insert(LEDGER), rows)

        assert await database.migrate() == HEAD_REVISION

        async with database.engine.connect() as connection:
            ledger = (await connection.execute(select(UsageRecord.id, UsageRecord.cost_usd, UsageRecord.team_id))).all()
            users = (await connection.execute(select(User.id, User.team_id, User.monthly_budget_usd))).all()
            keys = (await connection.execute(select(ApiKey.id, ApiKey.monthly_budget_usd))).all()
        assert sorted(ledger) == [("old1", Decimal("0.000000"), None), ("old2", Decimal("0.000000"), None)]
        assert sorted(users) == [("ann", None, None), ("bob", None, None)]
        assert keys == [("k1", None)]
        totals = UsageLedger(database)
        assert await totals.month_totals("user", "ann", MONTH) == (33, 0)
        assert await totals.month_totals("key", "k1", MONTH) == (33, 0)


async def test_dollar_amounts_round_trip_exactly(database: Database) -> None:
    async with database.sessions.begin() as session:
        for number, amount in enumerate(AMOUNTS):
            session.add(Team(id=f"t{number}", monthly_budget_usd=amount))
    async with database.sessions() as session:
        stored = (await session.execute(select(Team.id, Team.monthly_budget_usd).order_by(Team.id))).all()
    assert [amount for _, amount in stored] == AMOUNTS
    assert [str(amount) for _, amount in stored] == ["0.000001", "0.100000", "4999999.999999", "123456789012.345678"]


async def test_sums_are_exact_where_floats_drift(database: Database) -> None:
    """Ten rows of 0.1 dollars are one dollar (as floats they would be 0.9999999999999999)."""
    ledger = UsageLedger(database)
    for number in range(10):
        ledger.record(row(number, cost_usd=Decimal("0.1")))
    ledger.record(row(10, cost_usd=Decimal("123456789012.345678")))
    assert await ledger.flush_once()
    assert sum([0.1] * 10) != 1.0  # what a float column would have summed
    assert await ledger.month_sums("user", "ann", MONTH) == (0, Decimal("123456789013.345678"))
    async with database.engine.connect() as connection:
        total = (await connection.execute(select(UsageRecord.cost_usd).where(UsageRecord.request_id == "r3"))).scalar()
    assert total == Decimal("0.1")


async def test_amounts_are_rounded_half_even_to_the_micro_dollar_and_floats_are_refused(database: Database) -> None:
    async with database.sessions.begin() as session:
        session.add_all(
            [
                Team(id="up", monthly_budget_usd=Decimal("0.0000015")),
                Team(id="down", monthly_budget_usd=Decimal("0.0000025")),
            ]
        )
    async with database.sessions() as session:
        assert await session.scalar(select(Team.monthly_budget_usd).where(Team.id == "up")) == Decimal("0.000002")
        assert await session.scalar(select(Team.monthly_budget_usd).where(Team.id == "down")) == Decimal("0.000002")
    with pytest.raises(Exception, match="must be a Decimal"):
        async with database.sessions.begin() as session:
            session.add(Team(id="float", monthly_budget_usd=0.1))  # type: ignore[arg-type]


async def test_on_sqlite_amounts_are_whole_micro_dollars_and_on_postgresql_numeric(database: Database) -> None:
    async with database.sessions.begin() as session:
        session.add(Team(id="t", monthly_budget_usd=Decimal("12.5")))
    async with database.engine.connect() as connection:
        raw = (await connection.execute(text("SELECT monthly_budget_usd FROM teams"))).scalar()
    assert raw == (12_500_000 if database.backend == "sqlite" else Decimal("12.500000"))


async def test_month_totals_per_user_key_and_team(database: Database) -> None:
    ledger = UsageLedger(database)
    ledger.record(row(1, key_id="k1", team_id="red", prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.0015")))
    ledger.record(row(2, key_id="k2", team_id="red", prompt_tokens=1, completion_tokens=1, cost_usd=Decimal("0.25")))
    ledger.record(row(3, user_id="cid", team_id="red", prompt_tokens=100, cost_usd=Decimal("1.000001")))
    ledger.record(row(4, user_id="cid", team_id="blue", prompt_tokens=7, cost_usd=Decimal("0.7")))  # changed team
    ledger.record(row(5, key_id="k1", team_id="red", prompt_tokens=50, cached=True, cost_usd=Decimal(9)))  # free
    ledger.record(row(6, key_id="k1", month="2026-11", prompt_tokens=3, cost_usd=Decimal(3)))  # another month
    assert await ledger.flush_once()
    # Queued, not yet written: counted too.
    ledger.record(row(7, key_id="k1", team_id="red", prompt_tokens=2, cost_usd=Decimal("0.000001")))

    expected = {
        ("user", "ann"): (10 + 5 + 1 + 1 + 2, Decimal("0.251501")),
        ("user", "cid"): (107, Decimal("1.700001")),
        ("key", "k1"): (17, Decimal("0.001501")),
        ("key", "k2"): (2, Decimal("0.25")),
        ("team", "red"): (119, Decimal("1.251502")),
        ("team", "blue"): (7, Decimal("0.7")),
        ("team", "green"): (0, Decimal(0)),
    }
    for (kind, subject), (tokens, usd) in expected.items():
        assert await ledger.month_sums(kind, subject, MONTH) == (tokens, usd), (kind, subject)  # type: ignore[arg-type]
        assert await ledger.month_totals(kind, subject, MONTH) == (tokens, to_nano(usd))  # type: ignore[arg-type]
    assert await ledger.month_totals("key", "k1", "2026-11") == (3, 3_000_000_000)
    assert await ledger.month_usage("cid", MONTH) == 107 and await ledger.key_month_usage("k2", MONTH) == 2


async def test_month_report_spend_by_model_for_a_user_and_a_team(database: Database) -> None:
    ledger = UsageLedger(database)
    ledger.record(row(1, model_group="a", team_id="red", prompt_tokens=4, completion_tokens=1, cost_usd=Decimal("0.2")))
    ledger.record(row(2, model_group="a", team_id="red", cached=True, prompt_tokens=4, cost_usd=Decimal("0.2")))
    ledger.record(row(3, model_group="b", user_id="cid", team_id="red", prompt_tokens=2, cost_usd=Decimal("0.000003")))
    assert await ledger.flush_once()
    ledger.record(row(4, model_group="b", team_id="red", prompt_tokens=1, cost_usd=Decimal("0.1")))

    team = await ledger.month_report("red", MONTH, kind="team")
    assert (team.requests, team.used_tokens, team.spend_usd) == (4, 8, Decimal("0.300003"))
    assert {name: (u.requests, u.prompt_tokens, u.spend_usd) for name, u in team.by_model.items()} == {
        "a": (2, 4, Decimal("0.2")),
        "b": (2, 3, Decimal("0.100003")),
    }
    ann = await ledger.month_report("ann", MONTH)
    assert (ann.requests, ann.used_tokens, ann.spend_usd) == (3, 6, Decimal("0.3"))

"""Helpers for the console's tests: signing in over HTTP, reading CSRF tokens, seeding the ledger with traffic.

``seed_ledger`` writes rows through the gateway's own ``UsageLedger`` (so both backends get exactly what the
gateway would write); ``traffic`` makes a deterministic month of it for the pages and screenshots.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from llm_gateway.store.db import Database
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, admin_key: str, **kwargs: object) -> httpx.Response:
    """Fetch the sign-in form (its token and cookie), then post the key; the answer to the POST."""
    form = await client.get("/ui/sign-in", **kwargs)  # type: ignore[arg-type]
    assert form.status_code == 200, form.text
    return await client.post(
        "/ui/sign-in",
        data={"csrf": csrf_of(form.text), "admin_key": admin_key},
        **kwargs,  # type: ignore[arg-type]
    )


async def page_csrf(client: httpx.AsyncClient, path: str = "/ui/keys") -> str:
    """The session's CSRF token, as a page renders it into its forms."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


async def seed_ledger(database_url: str, rows: Iterable[UsageRow]) -> None:
    """Write ``rows`` to the ledger of the database at ``database_url`` (already migrated by a gateway)."""
    database = Database(database_url)
    try:
        ledger = UsageLedger(database)
        for row in rows:
            ledger.record(row)
        assert await ledger.flush_once()
    finally:
        await database.aclose()


USERS = ("ada@example.com", "grace@example.com", "linus@example.com", "ci-pipeline", "margaret@example.com")
MODELS = (("gpt-4o-mini", "gpt-4o-mini", "0.00000015"), ("gpt-4o", "gpt-4o", "0.0000025"))


def traffic(now: datetime, *, days: int = 30, per_hour: int = 3, seed: int = 17) -> list[UsageRow]:
    """A plausible month: more traffic in working hours, a few errors and cache hits, spend at list prices."""
    chance = random.Random(seed)
    rows = []
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    hour = start
    while hour < now - timedelta(hours=1):
        busy = 3 if 8 <= hour.hour <= 18 and hour.weekday() < 5 else 1
        for _ in range(chance.randint(0, per_hour * busy)):
            group, upstream, price = MODELS[0] if chance.random() < 0.7 else MODELS[1]
            prompt, completion = chance.randint(40, 1800), chance.randint(10, 600)
            status = 200 if chance.random() > 0.03 else chance.choice((429, 502))
            cached = status == 200 and chance.random() < 0.12
            when = hour + timedelta(seconds=chance.randint(0, 3599))
            rows.append(
                UsageRow(
                    request_id=f"seed-{len(rows)}",
                    user_id=chance.choice(USERS),
                    month=when.strftime("%Y-%m"),
                    model_group=group,
                    provider="openai",
                    upstream_model=upstream,
                    prompt_tokens=prompt if status == 200 else 0,
                    completion_tokens=completion if status == 200 else 0,
                    cached=cached,
                    status=status,
                    latency_ms=chance.randint(180, 2400) if status == 200 else chance.randint(20, 200),
                    created_at=when,
                    cost_usd=Decimal(0)
                    if cached or status != 200
                    else (Decimal(price) * (prompt + 4 * completion)).quantize(Decimal("0.000001")),
                )
            )
        hour += timedelta(hours=1)
    return rows


def utc_now() -> datetime:
    return datetime.now(UTC)

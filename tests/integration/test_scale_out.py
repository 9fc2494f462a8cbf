"""The scale-out proof: three ``llm-gateway serve`` processes behind a real nginx, sharing one Redis and one
PostgreSQL database, restarted one after another (SIGTERM, start, ready) under steady load.

Sixteen callers keep whole answers and streams going through nginx the whole time; while the first gateway
drains, a user limited to ``RATE_LIMIT`` requests a minute sends ``RATE_LIMIT + RATE_EXTRA`` at once, and
while the second drains, a user whose monthly budget fits ``BUDGET_FITS`` requests sends three times as
many. Then every gateway is stopped the same way and the ledger is read from PostgreSQL.

Expected: no failed request (every answer 200 and whole, every stream ends with ``[DONE]``), one ledger row
per answer and one upstream call per answer (nothing lost, nothing run twice), exactly ``RATE_LIMIT``
admitted, exactly the budget spent (the fake upstream reports the usage the gateway reserves, so there is no
estimation error: the budget is spent to the token). nginx retries a connection refused, never a POST it has
sent (``tests/scaleout_support.nginx_config``). Run with ``-s`` to see the summary line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from llm_gateway import tokens
from tests.fakes import Delay, FakeProvider, Reply
from tests.identity_support import ADMIN_API_KEY, create_key, sibling_database
from tests.limits_support import MODEL, chat_body, drop_prefix, set_user, unique_prefix
from tests.scaleout_support import Nginx, RestartableGateway
from tests.services import RedisServer

pytestmark = pytest.mark.integration

GATEWAYS = 3
# Half ask for whole answers, half for streams: ~150 requests a second, each on a new connection from nginx to a
# gateway. Before the gateway drained its listening socket at SIGTERM, one run in three here lost a request.
CALLERS = 16
WARMUP_SECONDS = 1.5  # load on all three before the first SIGTERM
SETTLE_SECONDS = 1.0  # a restarted gateway back in nginx's rotation (fail_timeout 2 s) before the next goes
SCENARIO_TIMEOUT_SECONDS = 150.0
MAX_TOKENS = 7
WORDS = "one two three four five"
ESTIMATE = tokens.estimate_prompt_tokens(chat_body(max_tokens=MAX_TOKENS), MODEL)
PER_REQUEST = ESTIMATE + MAX_TOKENS  # what the gateway reserves, and what the fake reports: charged exactly
# Time to first byte, then five chunks: a SIGTERM always finds answers and streams in flight.
UPSTREAM = Delay(0.02, Reply(WORDS, chunks=5, chunk_delay=0.02, prompt_tokens=ESTIMATE, completion_tokens=MAX_TOKENS))
RATE_LIMIT, RATE_EXTRA = 20, 10
BUDGET_FITS = 8
LOAD_USER, RATE_USER, BUDGET_USER = "scale-load", "scale-rate", "scale-budget"


@dataclass
class Outcome:
    status: int  # 0: no HTTP answer at all
    whole: bool  # 200 with the full text (and [DONE] for a stream)
    code: str | None = None  # the error's code, for a refusal
    detail: str = ""


@dataclass
class Run:
    """What the callers saw while the gateways were restarted."""

    answers: int = 0
    streams: int = 0
    failures: list[str] = field(default_factory=list)
    bursts: dict[str, list[Outcome]] = field(default_factory=dict)
    drains: list[float] = field(default_factory=list)  # SIGTERM to exit, per restart
    boots: list[float] = field(default_factory=list)  # start to ready, per restart
    seconds: float = 0.0

    @property
    def served(self) -> int:
        return self.answers + self.streams

    def admitted(self, user: str) -> Counter[tuple[int, str | None]]:
        return Counter((o.status, o.code) for o in self.bursts[user])


async def chat(client: httpx.AsyncClient, key: str, *, stream: bool) -> Outcome:
    """One chat request through nginx; whether it came back whole."""
    body = chat_body(max_tokens=MAX_TOKENS, stream=stream)
    headers = {"authorization": f"Bearer {key}"}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            text = (await response.aread()).decode()
            where = response.headers.get("x-upstream", "?")
    except httpx.TransportError as exc:
        return Outcome(0, False, None, f"{type(exc).__name__}: {exc}")
    if response.status_code != 200:
        code = json.loads(text)["error"]["code"] if text.startswith("{") else None
        return Outcome(response.status_code, False, code, f"{where}: {text[:300]}")
    content = streamed_text(text) if stream else json.loads(text)["choices"][0]["message"]["content"]
    return Outcome(200, content == WORDS, None, f"{where}: {text[-300:]}")


def streamed_text(sse: str) -> str | None:
    """The text of a whole stream; None when it does not end with ``[DONE]`` or carries an error."""
    payloads = [line.removeprefix("data: ") for line in sse.splitlines() if line.startswith("data: ")]
    if not payloads or payloads[-1] != "[DONE]" or any('"error"' in p for p in payloads):
        return None
    chunks = [json.loads(p) for p in payloads[:-1]]
    return "".join((c.get("delta") or {}).get("content") or "" for chunk in chunks for c in chunk["choices"])


async def steady(client: httpx.AsyncClient, key: str, stream: bool, stop: asyncio.Event, run: Run) -> None:
    while not stop.is_set():
        outcome = await chat(client, key, stream=stream)
        if not outcome.whole:
            run.failures.append(f"{'stream' if stream else 'answer'} {outcome.status} {outcome.detail}")
        elif stream:
            run.streams += 1
        else:
            run.answers += 1


async def burst(client: httpx.AsyncClient, key: str, count: int) -> list[Outcome]:
    """``count`` requests at once (alternately whole answers and streams), spread by nginx over the gateways."""
    return list(await asyncio.gather(*(chat(client, key, stream=i % 2 == 1) for i in range(count))))


async def clear_of_minute_boundary(margin: float) -> None:
    """The rate burst falls inside one minute of the limiter's (epoch-aligned) windows: exactly N, no blur."""
    into = time.time() % 60
    if into > 60 - margin:
        await asyncio.sleep(60 - into + 0.2)


async def rolling_restart(gateways: list[RestartableGateway], base_url: str, keys: dict[str, str]) -> Run:
    """Steady load through nginx while each gateway in turn is sent SIGTERM, waited for, started and made ready;
    a burst of the rate-limited user in flight at the first SIGTERM, of the budgeted user at the second."""
    run, stop = Run(), asyncio.Event()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        callers = [asyncio.create_task(steady(client, keys[LOAD_USER], i % 2 == 1, stop, run)) for i in range(CALLERS)]
        bursts = [(RATE_USER, RATE_LIMIT + RATE_EXTRA), (BUDGET_USER, 3 * BUDGET_FITS)]
        pending: dict[str, asyncio.Task[list[Outcome]]] = {}
        await asyncio.sleep(WARMUP_SECONDS)
        for index, gateway in enumerate(gateways):
            if index < len(bursts):
                user, count = bursts[index]
                pending[user] = asyncio.create_task(burst(client, keys[user], count))
                await asyncio.sleep(0.1)  # on its way to all three when the SIGTERM lands
            run.drains.append(await gateway.sigterm())
            gateway.start()
            run.boots.append(await gateway.wait_ready())
            await asyncio.sleep(SETTLE_SECONDS)
        stop.set()
        await asyncio.gather(*callers)
        run.bursts = {user: await task for user, task in pending.items()}
    run.seconds = time.monotonic() - began
    return run


@pytest.fixture
async def database(postgres_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database on the session's PostgreSQL server, dropped after."""
    async with sibling_database(postgres_url, tmp_path) as url:
        yield url


@pytest.fixture
async def fleet(
    tmp_path: Path, database: str, throwaway_redis: RedisServer, openai_fake: FakeProvider
) -> AsyncIterator[tuple[list[RestartableGateway], Nginx]]:
    """Three gateways (one worker each) on the built-in model groups, and nginx in front of them."""
    prefix = unique_prefix("scale-out")
    env = {
        "GATEWAY_CONFIG": "",
        "LOG_LEVEL": "WARNING",
        **openai_fake.env,
        "DATABASE_URL": database,
        "REDIS_URL": throwaway_redis.url,
        "REDIS_PREFIX": prefix,
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "CACHE_ENABLED": "false",  # every request goes upstream and is charged
        "LIMITS_REDIS_TIMEOUT_SECONDS": "5",  # the callers share two cores with the gateways
    }
    gateways = [RestartableGateway(env, tmp_path, f"gateway{i}") for i in range(GATEWAYS)]
    nginx = Nginx(tmp_path / "nginx", [g.port for g in gateways])
    try:
        for gateway in gateways:
            gateway.start()  # start-ups overlap; the fresh database is migrated once (an advisory lock)
        await asyncio.gather(*(g.wait_ready() for g in gateways))
        nginx.start()
        yield gateways, nginx
    finally:
        nginx.stop()
        for gateway in gateways:
            gateway.stop()
        drop_prefix(throwaway_redis.url, prefix)


async def ledger(database: str) -> dict[str, tuple[int, int, int]]:
    """Per user: rows, rows not 200, tokens charged; read from PostgreSQL, as an operator would."""
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch(
            "SELECT user_id, count(*) AS n, count(*) FILTER (WHERE status <> 200) AS bad,"
            " coalesce(sum(prompt_tokens + completion_tokens), 0) AS charged FROM usage_ledger GROUP BY user_id"
        )
    finally:
        await connection.close()
    return {row["user_id"]: (row["n"], row["bad"], row["charged"]) for row in rows}


def summary(run: Run, access_log: list[str], ports: list[int]) -> str:
    """The line the README quotes. From nginx's log: requests it sent on after a refused connection, how many
    each gateway answered, the slowest (a connection refused costs the time to be refused)."""
    tried = [line.split("[", 2)[1].split("]", 1)[0].split(", ") for line in access_log]
    sent_on = sum(len(addresses) > 1 for addresses in tried)
    slowest = max(float(line.split()[1]) for line in access_log)
    answered = Counter(addresses[-1].rsplit(":", 1)[-1] for addresses in tried)
    spread = "/".join(str(answered[str(port)]) for port in ports)
    return (
        f"scale-out: {GATEWAYS} gateways behind nginx, {len(run.drains)} rolling restarts in {run.seconds:.1f} s: "
        f"{run.served} requests served under load ({run.answers} whole answers, {run.streams} streams), 0 failed, "
        f"{sent_on} sent on by nginx after a refused connection; answered per gateway {spread}, "
        f"slowest {slowest:.2f} s; "
        f"SIGTERM to exit {', '.join(f'{d:.1f}' for d in run.drains)} s, start to ready "
        f"{', '.join(f'{b:.1f}' for b in run.boots)} s; ledger rows = requests served; rate limit: "
        f"{RATE_LIMIT} of {RATE_LIMIT + RATE_EXTRA} admitted; budget: {BUDGET_FITS} of {3 * BUDGET_FITS} admitted, "
        f"{BUDGET_FITS * PER_REQUEST} of {BUDGET_FITS * PER_REQUEST} tokens charged"
    )


async def test_rolling_restarts_behind_nginx_lose_nothing(
    fleet: tuple[list[RestartableGateway], Nginx], openai_fake: FakeProvider, database: str
) -> None:
    gateways, nginx = fleet
    openai_fake.reset()
    openai_fake.set_default(UPSTREAM)
    set_user(nginx.url, LOAD_USER, rate_limit_per_minute=1_000_000, monthly_token_budget=1_000_000_000)
    set_user(nginx.url, RATE_USER, rate_limit_per_minute=RATE_LIMIT)
    set_user(nginx.url, BUDGET_USER, monthly_token_budget=BUDGET_FITS * PER_REQUEST, rate_limit_per_minute=1000)
    keys = {user: create_key(nginx.url, user) for user in (LOAD_USER, RATE_USER, BUDGET_USER)}
    await clear_of_minute_boundary(margin=WARMUP_SECONDS + 8)

    run = await asyncio.wait_for(rolling_restart(gateways, nginx.url, keys), timeout=SCENARIO_TIMEOUT_SECONDS)
    await asyncio.gather(*(gateway.sigterm() for gateway in gateways))  # each flushes its ledger rows as it exits

    assert run.failures == [], "\n".join(run.failures[:20])
    assert run.answers > 0 and run.streams > 0
    assert run.admitted(RATE_USER) == {(200, None): RATE_LIMIT, (429, "rate_limit_exceeded"): RATE_EXTRA}
    assert run.admitted(BUDGET_USER) == {(200, None): BUDGET_FITS, (429, "insufficient_quota"): 2 * BUDGET_FITS}
    assert all(o.whole for outcomes in run.bursts.values() for o in outcomes if o.status == 200)
    rows = await ledger(database)
    assert rows[LOAD_USER] == (run.served, 0, run.served * PER_REQUEST)  # one row per answer: none lost
    assert rows[RATE_USER] == (RATE_LIMIT, 0, RATE_LIMIT * PER_REQUEST)
    assert rows[BUDGET_USER] == (BUDGET_FITS, 0, BUDGET_FITS * PER_REQUEST)  # the budget, to the token
    assert openai_fake.count == run.served + RATE_LIMIT + BUDGET_FITS  # no request was run twice
    for gateway in gateways:
        for log in gateway.logs():
            assert "Traceback" not in log and "unwritten" not in log, log
    print(f"\n{summary(run, nginx.access_log(), [g.port for g in gateways])}")

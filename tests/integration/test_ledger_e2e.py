"""The usage ledger through the gateway: streams charged (with, without upstream usage, cut by the client),
rows flushed when ``serve`` gets SIGTERM, and ``GET /v1/usage`` / ``/admin/usage`` exactly as DESIGN.md says.

Rows are read from the gateway's SQLite file with ``sqlite3``, as an operator would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_gateway import tokens
from llm_gateway.pricing import format_usd
from tests.conftest import StartGateway
from tests.fakes import Delay, Fail, FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_HEADERS, create_key
from tests.limits_support import (
    MODEL,
    ServedGateway,
    admin_usage,
    chat_body,
    ledger_rows,
    set_user,
    sqlite_path,
    wait_for,
)
from tests.pricing_support import spend_usd

pytestmark = pytest.mark.integration

BUDGET = 100_000
LONG_TEXT = " ".join(f"word{i}" for i in range(60))


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def rows_for(env: dict[str, str], count: int, **where: Any) -> list[dict[str, Any]]:
    """Wait until the ledger holds ``count`` rows matching ``where`` (the writer flushes every 0.25 s)."""
    database = sqlite_path(env["DATABASE_URL"])
    return wait_for(lambda: (rows := ledger_rows(database, **where)) and len(rows) >= count and rows, what="rows")


def my_usage(gateway: GatewayServer, key: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}, params=params)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def stream_all(gateway: GatewayServer, key: str, body: dict[str, Any]) -> list[str]:
    payloads = []
    with httpx.stream(
        "POST", f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=body, timeout=20
    ) as response:
        assert response.status_code == 200, response.read()
        payloads = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    return payloads


@pytest.fixture
def alice(gateway: GatewayServer) -> str:
    set_user(gateway.base_url, "alice", monthly_token_budget=BUDGET)
    return create_key(gateway.base_url, "alice")


# -- streaming usage ----------------------------------------------------------------------------


def test_stream_is_charged_the_usage_the_upstream_reports(
    gateway: GatewayServer, fake_env: dict[str, str], fakes: dict[str, FakeProvider], alice: str
) -> None:
    fakes["openai"].push(Reply("one two three", prompt_tokens=21, completion_tokens=33))
    stream_all(gateway, alice, chat_body(max_tokens=50, stream=True))
    # The gateway asked the upstream for usage on its own account; the caller did not ask, so sees none.
    assert fakes["openai"].chat_requests[0].body["stream_options"] == {"include_usage": True}
    [row] = rows_for(fake_env, 1, user_id="alice")
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"], row["cached"]) == (21, 33, 200, 0)
    assert (row["model_group"], row["provider"], row["month"]) == (MODEL, "openai", this_month())
    usage = my_usage(gateway, alice)
    assert (usage["used_tokens"], usage["reserved_tokens"], usage["remaining_tokens"]) == (54, 0, BUDGET - 54)


def test_anthropic_stream_is_charged_its_message_delta_usage(
    gateway: GatewayServer, fake_env: dict[str, str], fakes: dict[str, FakeProvider], alice: str
) -> None:
    fakes["anthropic"].push(Reply("bonjour tout le monde", prompt_tokens=17, completion_tokens=29))
    stream_all(gateway, alice, chat_body(max_tokens=50, stream=True, model="claude-3-5-haiku-latest"))
    [row] = rows_for(fake_env, 1, user_id="alice")
    assert (row["prompt_tokens"], row["completion_tokens"], row["provider"]) == (17, 29, "anthropic")


def test_stream_without_upstream_usage_is_charged_the_counted_text(
    gateway: GatewayServer, fake_env: dict[str, str], fakes: dict[str, FakeProvider], alice: str
) -> None:
    fakes["openai"].push(Reply(LONG_TEXT, include_usage=False, prompt_tokens=999, completion_tokens=999))
    body = chat_body("count me", max_tokens=500, stream=True)
    stream_all(gateway, alice, body)
    [row] = rows_for(fake_env, 1, user_id="alice")
    counted = tokens.count_completion_tokens(LONG_TEXT, MODEL)
    assert counted > 60  # "wordN" is more than one token: a per-chunk count would be wrong
    assert (row["prompt_tokens"], row["completion_tokens"]) == (tokens.estimate_prompt_tokens(body, MODEL), counted)
    assert my_usage(gateway, alice)["used_tokens"] == row["prompt_tokens"] + counted


async def test_client_that_disconnects_mid_stream_is_charged_what_was_generated(
    gateway: GatewayServer, fake_env: dict[str, str], fakes: dict[str, FakeProvider], alice: str
) -> None:
    fakes["openai"].push(Reply(LONG_TEXT, chunks=60, chunk_delay=0.05, prompt_tokens=12, completion_tokens=300))
    body = chat_body("tell me a long story", max_tokens=400, stream=True)
    async with (
        httpx.AsyncClient(timeout=20) as client,
        client.stream(
            "POST", f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": alice}, json=body
        ) as response,
    ):
        assert response.status_code == 200
        received = ""
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content":"word' in line:
                received = line
                break  # leaving the block closes the connection mid-stream
    assert received

    [row] = rows_for(fake_env, 1, user_id="alice")
    assert row["status"] == 499  # the client closed the request
    full = tokens.count_completion_tokens(LONG_TEXT, MODEL)
    assert 0 < row["completion_tokens"] < full  # charged for what was generated before the cut, no more
    assert row["prompt_tokens"] == tokens.estimate_prompt_tokens(body, MODEL)  # no usage came: the estimate
    usage = my_usage(gateway, alice)
    # The 12 + 400 reserved at admission are released: only the charge remains.
    charged = row["prompt_tokens"] + row["completion_tokens"]
    assert (usage["used_tokens"], usage["reserved_tokens"], usage["remaining_tokens"]) == (
        charged,
        0,
        BUDGET - charged,
    )


# -- rows flushed on SIGTERM ----------------------------------------------------------------------


async def test_serve_flushes_every_ledger_row_on_sigterm(
    fake_env: dict[str, str], fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    served = ServedGateway(fake_env, tmp_path).wait_healthy()
    try:
        key = create_key(served.base_url, "sigterm")
        done_before = 3
        in_flight = 5
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{served.base_url}/v1/chat/completions"
            for i in range(done_before):
                answer = await client.post(url, headers={"x-api-key": key}, json=chat_body(f"before {i}"))
                assert answer.status_code == 200
            fakes["openai"].set_default(Delay(1.0, Reply()))
            pending = [
                asyncio.ensure_future(
                    client.post(url, headers={"x-api-key": key}, json=chat_body(f"during {i}", stream=i == 0))
                )
                for i in range(in_flight)
            ]
            # Every request is at the upstream (admitted, not yet settled) when SIGTERM arrives.
            await asyncio.to_thread(
                wait_for, lambda: fakes["openai"].count == done_before + in_flight, what="requests upstream"
            )
            code = await asyncio.to_thread(served.sigterm)
            answers = await asyncio.gather(*pending)
        assert [a.status_code for a in answers] == [200] * in_flight  # in-flight requests were finished
        assert code in (0, -15), served.log.read_text()  # uvicorn re-raises the signal after a clean shutdown
        rows = ledger_rows(sqlite_path(fake_env["DATABASE_URL"]), user_id="sigterm")
        assert len(rows) == done_before + in_flight, served.log.read_text()
        assert all(row["status"] == 200 and row["prompt_tokens"] == 11 for row in rows)
        assert "unwritten" not in served.log.read_text()
    finally:
        served.stop()


# -- GET /v1/usage and /admin/usage ---------------------------------------------------------------

REPORT_KEYS = {
    "user_id",
    "month",
    "budget_tokens",
    "used_tokens",
    "reserved_tokens",
    "remaining_tokens",
    "requests",
    "spend_usd",
    "by_model",
}


def test_usage_report_shape_and_admin_agreement(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], alice: str
) -> None:
    url = f"{gateway.base_url}/v1/chat/completions"
    headers = {"x-api-key": alice}
    fakes["openai"].push(Reply(prompt_tokens=11, completion_tokens=7), Reply(prompt_tokens=5, completion_tokens=3))
    fakes["anthropic"].push(Reply(prompt_tokens=20, completion_tokens=30))
    assert httpx.post(url, headers=headers, json=chat_body("one")).status_code == 200
    assert httpx.post(url, headers=headers, json=chat_body("two")).status_code == 200
    assert httpx.post(url, headers=headers, json=chat_body("two")).headers["x-gateway-cache"] == "hit"  # free
    claude = chat_body("three", model="claude-3-5-haiku-latest")
    assert httpx.post(url, headers=headers, json=claude).status_code == 200
    fakes["openai"].push(Fail(400, "bad request"))
    assert httpx.post(url, headers=headers, json=chat_body("four")).status_code == 400  # nothing charged

    month = this_month()
    claude_spend = spend_usd("claude-3-5-haiku-latest", (20, 30), provider="anthropic")
    openai_spend = spend_usd(MODEL, (11, 7), (5, 3))
    expected = {
        "user_id": "alice",
        "month": month,
        "budget_tokens": BUDGET,
        "used_tokens": 18 + 8 + 50,
        "reserved_tokens": 0,
        "remaining_tokens": BUDGET - 76,
        "requests": 5,
        "spend_usd": format_usd(Decimal(claude_spend) + Decimal(openai_spend)),  # the hit and the 400 cost nothing
        "by_model": {
            "claude-3-5-haiku-latest": {
                "prompt_tokens": 20,
                "completion_tokens": 30,
                "requests": 1,
                "spend_usd": claude_spend,
            },
            MODEL: {"prompt_tokens": 16, "completion_tokens": 10, "requests": 4, "spend_usd": openai_spend},
        },
    }
    mine = my_usage(gateway, alice)
    assert set(mine) == REPORT_KEYS
    model_keys = {"prompt_tokens", "completion_tokens", "requests", "spend_usd"}
    assert all(set(entry) == model_keys for entry in mine["by_model"].values())
    assert mine == expected
    assert my_usage(gateway, alice, month=month) == expected
    assert admin_usage(gateway.base_url, "alice", month) == expected
    assert admin_usage(gateway.base_url, "alice") == expected

    empty = {**expected, "month": "2001-01", "used_tokens": 0, "remaining_tokens": BUDGET, "requests": 0}
    empty["spend_usd"] = "0.000000"
    empty["by_model"] = {}
    assert my_usage(gateway, alice, month="2001-01") == empty
    assert admin_usage(gateway.base_url, "alice", "2001-01") == empty


def test_usage_needs_a_credential_and_a_valid_month(gateway: GatewayServer, alice: str) -> None:
    anonymous = httpx.get(f"{gateway.base_url}/v1/usage")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    wrong = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": "sk-gw-nope"})
    assert wrong.status_code == 401
    bad = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": alice}, params={"month": "2025-13"})
    assert bad.status_code == 400
    assert (bad.json()["error"]["type"], bad.json()["error"]["param"]) == ("invalid_request_error", "month")
    admin_bad = httpx.get(
        f"{gateway.base_url}/admin/usage", headers=ADMIN_HEADERS, params={"user_id": "alice", "month": "25-01"}
    )
    assert admin_bad.status_code == 400
    assert httpx.get(f"{gateway.base_url}/admin/usage", params={"user_id": "alice"}).status_code == 401


def test_usage_of_a_user_without_overrides_shows_the_default_budget(
    start_gateway: StartGateway, fake_env: dict[str, str]
) -> None:
    gateway = start_gateway({**fake_env, "DEFAULT_MONTHLY_TOKEN_BUDGET": "4321"})
    key = create_key(gateway.base_url, "bob")
    answer = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=chat_body())
    assert answer.status_code == 200
    report = my_usage(gateway, key)
    assert (report["budget_tokens"], report["used_tokens"], report["remaining_tokens"]) == (4321, 18, 4303)
    assert admin_usage(gateway.base_url, "bob") == report


def test_each_row_records_its_upstream_attempts(
    gateway: GatewayServer, fake_env: dict[str, str], fakes: dict[str, FakeProvider], alice: str
) -> None:
    """1 for a first answer, 2 after a fallback, 0 for a cache hit (no upstream), 1 for an upstream refusal."""
    url = f"{gateway.base_url}/v1/chat/completions"
    headers = {"x-api-key": alice}
    assert httpx.post(url, headers=headers, json=chat_body("first")).status_code == 200
    fakes["openai"].push(Fail(500))
    fallback = httpx.post(url, headers=headers, json=chat_body("fallback"))
    assert fallback.headers["x-gateway-attempts"] == "2"
    assert httpx.post(url, headers=headers, json=chat_body("first")).headers["x-gateway-cache"] == "hit"
    fakes["openai"].push(Fail(400, "bad request"))
    assert httpx.post(url, headers=headers, json=chat_body("refused")).status_code == 400

    rows = rows_for(fake_env, 4, user_id="alice")
    by_request = sorted((row["created_at"], row["cached"], row["status"], row["attempts"]) for row in rows)
    assert [(cached, status, attempts) for _, cached, status, attempts in by_request] == [
        (0, 200, 1),
        (0, 200, 2),
        (1, 200, 0),
        (0, 400, 1),
    ]

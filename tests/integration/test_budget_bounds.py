"""Budgets that hold against long answers: every choice reserved, the reserved cap always sent upstream, a stream
that writes past its reservation ended. Each test is a reproduction from the hardening review, run in process
and with Redis, through the gateway over HTTP, against an upstream that writes as much as it is allowed to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from llm_gateway import tokens
from llm_gateway.pipeline.meter import CAP_SLACK_TOKENS, CAP_TOLERANCE
from tests.conftest import StartGateway
from tests.fakes.verbose import VerboseOpenAI
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, create_key, sqlite_url
from tests.limits_support import MODEL, admin_usage, chat_body, drop_prefix, set_user, unique_prefix, wait_for
from tests.sdk_support import sse_payloads

pytestmark = pytest.mark.integration

ALLOWANCE = 4096  # DEFAULT_COMPLETION_ALLOWANCE's default
PROMPT = tokens.estimate_prompt_tokens(chat_body(max_tokens=None), MODEL)  # the fake reports exactly this


@pytest.fixture
def upstream() -> Iterator[VerboseOpenAI]:
    fake = VerboseOpenAI(prompt_tokens=PROMPT).start()
    yield fake
    fake.stop()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def gateway(
    request: pytest.FixtureRequest, start_gateway: StartGateway, upstream: VerboseOpenAI, tmp_path: Path
) -> Iterator[GatewayServer]:
    env = {
        "GATEWAY_CONFIG": "",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "OPENAI_API_KEY": "sk-test-verbose",
        "OPENAI_BASE_URL": upstream.base_url,
        "CACHE_ENABLED": "false",
    }
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = unique_prefix("bounds")
        shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "LIMITS_REDIS_TIMEOUT_SECONDS": "5"}
        yield start_gateway({**env, **shared})
        drop_prefix(redis_url, prefix)
    else:
        yield start_gateway(env)


def post(gateway: GatewayServer, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=body, timeout=30)


def settled_usage(gateway: GatewayServer, user: str, requests: int) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (report := admin_usage(gateway.base_url, user))["requests"] == requests
            and report["reserved_tokens"] == 0
            and report
        ),
        what=f"{requests} settled requests",
    )


def test_every_choice_is_reserved(gateway: GatewayServer, upstream: VerboseOpenAI) -> None:
    """n=128, max_tokens=1000 on a 2,000-token budget was admitted and charged 128,005."""
    set_user(gateway.base_url, "ann", monthly_token_budget=2000)
    key = create_key(gateway.base_url, "ann")

    too_many = post(gateway, key, chat_body(max_tokens=1000, n=128))
    assert too_many.status_code == 400, too_many.text  # above MAX_CHOICES (16): refused as it is parsed
    assert too_many.json()["error"]["param"] == "n"
    refused = post(gateway, key, chat_body(max_tokens=1000, n=16))
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "n=16" in refused.json()["error"]["message"]
    assert upstream.requests == []  # refused before any upstream call

    served = post(gateway, key, chat_body(max_tokens=600, n=3))
    assert served.status_code == 200, served.text
    assert len(served.json()["choices"]) == 3
    report = settled_usage(gateway, "ann", 1)
    assert report["used_tokens"] == PROMPT + 3 * 600 <= 2000


def test_the_reserved_cap_always_goes_upstream(gateway: GatewayServer, upstream: VerboseOpenAI) -> None:
    """No max_tokens and an upstream that writes 10,000 tokens charged 10,005 on a 5,000 budget: the gateway
    reserved 4,096 but sent no cap while the budget had at least that much left."""
    set_user(gateway.base_url, "bea", monthly_token_budget=5000)
    key = create_key(gateway.base_url, "bea")

    first = post(gateway, key, chat_body(max_tokens=None))
    assert first.status_code == 200, first.text
    assert upstream.requests[0]["max_completion_tokens"] == ALLOWANCE
    assert first.json()["choices"][0]["finish_reason"] == "length"

    second = post(gateway, key, chat_body(max_tokens=None))  # what is left is less than the allowance
    assert second.status_code == 200, second.text
    assert upstream.requests[1]["max_completion_tokens"] == 5000 - (PROMPT + ALLOWANCE) - PROMPT

    assert post(gateway, key, chat_body(max_tokens=None)).status_code == 429
    assert settled_usage(gateway, "bea", 2)["used_tokens"] == 5000


def test_concurrent_requests_without_max_tokens_hold_the_budget(
    gateway: GatewayServer, upstream: VerboseOpenAI
) -> None:
    """40 such requests in parallel on a 100,000 budget charged 241,621."""
    set_user(gateway.base_url, "cal", monthly_token_budget=100_000, rate_limit_per_minute=1000)
    key = create_key(gateway.base_url, "cal")

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            url, headers = f"{gateway.base_url}/v1/chat/completions", {"x-api-key": key}
            body = chat_body(max_tokens=None)
            return await asyncio.gather(*(client.post(url, headers=headers, json=body) for _ in range(40)))

    responses = asyncio.run(fire())
    served = [r for r in responses if r.status_code == 200]
    assert all(r.status_code == 429 for r in responses if r.status_code != 200)
    charged = sum(r.json()["usage"]["total_tokens"] for r in served)
    assert charged <= 100_000
    assert len(served) >= 100_000 // (PROMPT + ALLOWANCE)  # the budget is used, not refused wholesale
    assert settled_usage(gateway, "cal", len(served))["used_tokens"] == charged


def test_an_endless_stream_is_ended_at_its_reservation(gateway: GatewayServer, upstream: VerboseOpenAI) -> None:
    """An endless stream with no upstream usage on a 1,000,000 budget charged 8,682,410."""
    upstream.endless, upstream.honours_cap, upstream.send_usage = True, False, False
    set_user(gateway.base_url, "dan", monthly_token_budget=1_000_000)
    key = create_key(gateway.base_url, "dan")

    response, events = sse_payloads(
        gateway.base_url, chat_body(max_tokens=None, stream=True), headers={"x-api-key": key}, timeout=60
    )
    assert response.status_code == 200

    limit = ALLOWANCE + int(ALLOWANCE * CAP_TOLERANCE) + CAP_SLACK_TOKENS
    assert events[-1] != b"[DONE]"
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "completion_limit_exceeded", error
    relayed = sum(b'"content":" tok"' in event for event in events)
    assert ALLOWANCE < relayed <= limit + 1
    assert upstream.streamed_chunks < 50_000  # the upstream connection was closed, not read to its end
    report = settled_usage(gateway, "dan", 1)
    assert PROMPT + ALLOWANCE < report["used_tokens"] <= PROMPT + limit + 1


def test_a_stream_does_not_carry_usage_unless_asked(gateway: GatewayServer, upstream: VerboseOpenAI) -> None:
    """The gateway asks the upstream for usage for itself; OpenAI omits the key when the caller did not ask."""
    upstream.wants = 5
    key = create_key(gateway.base_url, "eve")
    body = chat_body(max_tokens=None, stream=True)

    for include_usage in (False, True):
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        _, events = sse_payloads(gateway.base_url, {**body, **options}, headers={"x-api-key": key})
        assert events[-1] == b"[DONE]"
        chunks = [orjson.loads(event) for event in events[:-1]]
        if include_usage:
            assert all(chunk["usage"] is None for chunk in chunks[:-1])
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
        else:
            assert all("usage" not in chunk for chunk in chunks), chunks
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == " tok" * 5


def test_a_server_that_knows_only_max_tokens_gets_the_cap_under_that_name(
    start_gateway: StartGateway, upstream: VerboseOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n"
        "  local:\n"
        "    type: openai\n"
        f"    base_url: {upstream.base_url}\n"
        "    api_key: none\n"
        "    max_tokens_field: max_tokens\n"
        "models:\n"
        "  small:\n"
        "    - {provider: local, model: llama3}\n"
    )
    env = {"GATEWAY_CONFIG": str(config), "LOG_LEVEL": "WARNING", "DATABASE_URL": sqlite_url(tmp_path)}
    gateway = start_gateway({**env, "ADMIN_API_KEY": ADMIN_API_KEY})
    key = create_key(gateway.base_url, "fay")
    answered = post(gateway, key, {**chat_body(max_tokens=None), "model": "small"})
    assert answered.status_code == 200, answered.text
    sent = upstream.requests[0]
    assert (sent.get("max_tokens"), "max_completion_tokens" in sent) == (ALLOWANCE, False)

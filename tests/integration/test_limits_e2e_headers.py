"""The ``x-ratelimit-*`` headers on every chat answer, and the anonymous callers' default rate, through HTTP.

Success (JSON and stream), cache hit, both 429s and upstream failures all carry the five headers;
their values follow the caller's limits as requests are admitted.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from llm_gateway import tokens
from tests.fakes import Fail, FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import MODEL, assert_ratelimit_headers, chat_body, set_user

pytestmark = pytest.mark.integration

BUDGET = 1000


def post(gateway: GatewayServer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", headers=headers, json=body, timeout=20)


def test_every_chat_answer_carries_the_ratelimit_headers(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    set_user(gateway.base_url, "hana", monthly_token_budget=BUDGET)
    key = create_key(gateway.base_url, "hana", rate_limit_per_minute=7)
    estimate = tokens.estimate_prompt_tokens(chat_body(), MODEL)
    reservation = estimate + 7
    fakes["openai"].push(Reply(prompt_tokens=11, completion_tokens=7))

    first = post(gateway, chat_body(), key)
    assert first.status_code == 200
    assert assert_ratelimit_headers(first.headers) == {
        "x-ratelimit-limit-requests": "7",
        "x-ratelimit-remaining-requests": "6",
        "x-ratelimit-reset-requests": first.headers["x-ratelimit-reset-requests"],
        "x-ratelimit-limit-tokens": str(BUDGET),
        "x-ratelimit-remaining-tokens": str(BUDGET - reservation),  # as admitted: this request's hold counted
    }

    hit = post(gateway, chat_body(), key)
    assert hit.headers["x-gateway-cache"] == "hit"
    headers = assert_ratelimit_headers(hit.headers)
    assert headers["x-ratelimit-remaining-requests"] == "5"
    assert int(headers["x-ratelimit-remaining-tokens"]) == BUDGET - 18 - reservation

    with httpx.stream(
        "POST", f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=chat_body(stream=True)
    ) as streamed:
        assert streamed.status_code == 200
        streamed.read()
    assert assert_ratelimit_headers(streamed.headers)["x-ratelimit-remaining-requests"] == "4"

    too_big = post(gateway, chat_body(max_tokens=BUDGET), key)
    assert too_big.status_code == 429
    assert too_big.json()["error"]["code"] == "insufficient_quota"
    assert int(too_big.headers["retry-after"]) >= 1
    headers = assert_ratelimit_headers(too_big.headers)
    assert headers["x-ratelimit-remaining-requests"] == "4"  # a refused request costs no request slot

    fakes["openai"].push(Fail(400, "bad parameter"))
    rejected = post(gateway, chat_body("rejected"), key)
    assert rejected.status_code == 400
    assert assert_ratelimit_headers(rejected.headers)["x-ratelimit-remaining-requests"] == "3"

    for fake in fakes.values():
        fake.push(Fail(500))
    failed = post(gateway, chat_body("everyone down"), key)
    assert failed.status_code == 502
    assert assert_ratelimit_headers(failed.headers)["x-ratelimit-remaining-requests"] == "2"

    for i in range(2):
        assert post(gateway, chat_body(f"more {i}"), key).status_code == 200
    limited = post(gateway, chat_body("one too many"), key)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 120
    headers = assert_ratelimit_headers(limited.headers)
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("7", "0")


def test_the_sdk_sees_the_headers_and_a_rate_limit_error(gateway: GatewayServer) -> None:
    key = create_key(gateway.base_url, "ivan", rate_limit_per_minute=1)
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=7
        )
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=7)
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "1"


def test_anonymous_callers_get_ten_requests_a_minute_by_default(gateway: GatewayServer) -> None:
    answers = [post(gateway, chat_body(f"anon {i}")) for i in range(11)]
    assert [a.status_code for a in answers] == [200] * 10 + [429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers[:10]] == [str(9 - i) for i in range(10)]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "10"
    assert answers[0].headers["x-ratelimit-limit-tokens"] == "10000"  # ANON_MONTHLY_TOKEN_BUDGET
    assert answers[10].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(answers[10].headers["retry-after"]) >= 1
    assert_ratelimit_headers(answers[10].headers)
    # A caller with a key is counted apart from the anonymous ones.
    key = create_key(gateway.base_url, "with-a-key")
    assert post(gateway, chat_body("keyed"), key).status_code == 200

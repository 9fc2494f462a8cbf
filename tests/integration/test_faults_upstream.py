"""Upstream faults the streaming and fallback suites do not cover: each ends in a fallback or a clean error in time.

Already covered elsewhere (not repeated): slow first byte and stream idle timeout, a stream cut
mid-answer, an error event mid-stream, a wrong content type for a stream, every provider failing
(test_chat_streaming.py, test_chat_fallback.py). Each fault is played by the first provider the
request meets, OpenAI or (behind a failing OpenAI) Anthropic, so both HTTP clients are exercised.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.fakes import Behaviour, Delay, Fail, FakeProvider, Raw, Stall
from tests.harness import GatewayServer

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Say hello."}]
ATTEMPT_TIMEOUT = 0.5  # UPSTREAM_TIMEOUT_SECONDS in these tests
# Who answers after the faulty provider: OpenAI's fault falls back to Anthropic; Anthropic's (OpenAI
# failing first with a 500) to Groq.
NEXT = {"openai": "anthropic", "anthropic": "groq"}


def post(gateway: GatewayServer, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=30)
    return response, time.monotonic() - started


def play_on(fakes: dict[str, FakeProvider], faulty: str, behaviour: Behaviour) -> None:
    if faulty == "anthropic":
        fakes["openai"].push(Fail(500))
    fakes[faulty].push(behaviour)


def assert_answered_by(response: httpx.Response, provider: str, attempts: int) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-provider"] == provider
    assert response.headers["x-gateway-attempts"] == str(attempts)
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == f"Hello from {provider}"
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.fixture
def gateway(start_gateway: Any, fake_env: dict[str, str]) -> GatewayServer:
    env = {**fake_env, "UPSTREAM_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT), "CACHE_ENABLED": "false"}
    server: GatewayServer = start_gateway(env)
    return server


BROKEN_ANSWERS = {
    # Protection: the JSON parse of a 200 answer (ProviderProtocolError, retryable) -- else a 500 or a
    # broken body is passed on as a success.
    "invalid JSON": Raw(200, b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess'),
    # Protection: same parse; a proxy's HTML page with 200 is not an answer.
    "HTML with 200": Raw(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    # Protection: the shape check (``choices`` present) -- an error object delivered with 200 is not an answer.
    "error object with 200": Raw(200, b'{"error": {"message": "overloaded", "type": "overloaded_error"}}'),
    "empty body with 200": Raw(200, b""),
}


@pytest.mark.parametrize("faulty", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", list(BROKEN_ANSWERS))
def test_a_broken_200_answer_falls_back(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], faulty: str, fault: str
) -> None:
    play_on(fakes, faulty, BROKEN_ANSWERS[fault])
    response, _ = post(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert_answered_by(response, NEXT[faulty], attempts=2 if faulty == "openai" else 3)
    assert fakes[faulty].count == 1


@pytest.mark.parametrize("faulty", ["openai", "anthropic"])
def test_a_body_that_stalls_mid_answer_falls_back_within_the_attempt_timeout(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], faulty: str
) -> None:
    """Protection: the attempt timeout also bounds every read of a non-stream body (the
    transport's gap between reads), not only the first byte: headers and half the JSON arrive, then silence."""
    play_on(fakes, faulty, Stall(after_chunks=0, seconds=10))
    response, elapsed = post(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert_answered_by(response, NEXT[faulty], attempts=2 if faulty == "openai" else 3)
    assert elapsed < ATTEMPT_TIMEOUT + 2.0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_every_provider_hanging_is_504_within_the_request_timeout(
    start_gateway: Any, fake_env: dict[str, str], fakes: dict[str, FakeProvider], stream: bool
) -> None:
    """Protection: REQUEST_TIMEOUT_SECONDS bounds the whole request across attempts (the router's
    deadline) even when the per-attempt timeout is far longer: no response ever comes, no hang."""
    gateway = start_gateway({**fake_env, "UPSTREAM_TIMEOUT_SECONDS": "600", "REQUEST_TIMEOUT_SECONDS": "1"})
    for fake in fakes.values():
        fake.set_default(Delay(60))
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
    response, elapsed = post(gateway, body)
    assert response.status_code == 504, response.text
    assert response.headers["content-type"].startswith("application/json")  # an error, not an empty stream
    error = response.json()["error"]
    assert error["code"] == "all_providers_failed" and error["type"] == "api_error"
    assert [attempt["provider"] for attempt in error["attempts"]] == ["openai"]
    assert 1.0 <= elapsed < 2.5


def test_a_provider_that_hangs_for_each_attempt_is_skipped_in_turn(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    """Protection: the attempt timeout applies per deployment, so two hanging providers cost two attempt
    timeouts and the third answers (a stream here: fallback before the first byte)."""
    fakes["openai"].push(Delay(10))
    fakes["anthropic"].push(Delay(10))
    response, elapsed = post(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200 and response.headers["x-gateway-provider"] == "groq"
    assert response.headers["x-gateway-attempts"] == "3"
    assert response.text.rstrip().endswith("data: [DONE]")
    assert stream_text(response.text) == "Hello from groq"
    assert elapsed < 2 * ATTEMPT_TIMEOUT + 2.0


def stream_text(sse: str) -> str:
    text = ""
    for line in sse.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    return text

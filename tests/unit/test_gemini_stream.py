"""Gemini stream events -> OpenAI chunks (the translator, pure), the adapter's error reading, and Vertex AI's
token source (refresh shared, in the background, failures retryable and masked) without a network."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_gateway.errors import ProviderUnreachable, UpstreamStreamError
from llm_gateway.providers.adapter import SecretMask
from llm_gateway.providers.gemini.auth import RotatingMask, TokenSource
from llm_gateway.providers.gemini.client import GeminiProvider
from llm_gateway.providers.gemini.stream import GeminiStreamTranslator
from llm_gateway.settings import ProviderConfig


def text_event(text: str, *, index: int = 0, finish: str | None = None, usage: dict[str, int] | None = None) -> dict:
    candidate: dict[str, Any] = {"index": index, "content": {"role": "model", "parts": [{"text": text}]}}
    if finish:
        candidate["finishReason"] = finish
    event: dict[str, Any] = {"responseId": "r1", "candidates": [candidate]}
    if usage:
        event["usageMetadata"] = usage
    return event


def feed(translator: GeminiStreamTranslator, *events: dict) -> list[dict]:
    return [chunk for event in events for chunk in translator.feed(event)]


def test_text_stream_with_usage() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=True)
    chunks = feed(
        translator,
        text_event("Hel", usage={"promptTokenCount": 4, "totalTokenCount": 4}),
        text_event("lo"),
        text_event(
            "", finish="STOP", usage={"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 3}
        ),
    )
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, None, None, "stop"]
    assert all(c["id"] == "chatcmpl-r1" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert translator.finished and translator.usage is not None and translator.usage["prompt_tokens"] == 4
    assert feed(translator, text_event("late")) == []


def test_tool_calls_whole_with_indexes() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False)
    calls = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"name": "a", "args": {"x": 1}}},
                        {"functionCall": {"name": "b", "args": {}}},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }
    chunks = feed(translator, calls)
    first, second, finish = (c["choices"][0] for c in chunks)
    assert first["delta"]["role"] == "assistant" and first["delta"]["content"] is None
    assert first["delta"]["tool_calls"][0]["index"] == 0
    assert first["delta"]["tool_calls"][0]["function"] == {"name": "a", "arguments": '{"x":1}'}
    assert first["delta"]["tool_calls"][0]["id"].startswith("call_")
    assert second["delta"] == {"tool_calls": [{**second["delta"]["tool_calls"][0], "index": 1}]}
    assert finish["finish_reason"] == "tool_calls"
    assert "usage" not in chunks[0]


def test_thoughts_are_reasoning_not_content() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False)
    event = {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}, {"text": "Hi"}]}}]}
    deltas = [c["choices"][0]["delta"] for c in feed(translator, event)]
    assert deltas == [{"role": "assistant", "content": None}, {"reasoning_content": "hmm"}, {"content": "Hi"}]


def test_several_candidates_finish_separately() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False, candidates=2)
    feed(translator, text_event("a", index=0, finish="STOP"))
    assert not translator.finished
    chunks = feed(translator, text_event("b", index=1, finish="MAX_TOKENS"))
    assert translator.finished
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
    assert {c["choices"][0]["index"] for c in chunks} == {1}


def test_blocked_prompt_and_safety() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=True)
    chunks = feed(translator, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}})
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, "content_filter"]
    assert translator.finished and chunks[-1]["usage"]["prompt_tokens"] == 3
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False)
    chunks = feed(translator, {"candidates": [{"finishReason": "SAFETY", "index": 0}]})
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


def test_an_error_event_fails_the_stream() -> None:
    translator = GeminiStreamTranslator(model="m", created=1, include_usage=False, provider="google")
    feed(translator, text_event("a"))
    with pytest.raises(UpstreamStreamError) as caught:
        translator.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    assert caught.value.message == "google stream failed: UNAVAILABLE: overloaded"
    assert caught.value.provider == "google"


# ---------------------------------------------------------------------------------- error fields


@pytest.fixture
def adapter() -> GeminiProvider:
    config = ProviderConfig.model_validate(
        {"type": "gemini", "api_key": "AIzaSECRET", "base_url": "https://generativelanguage.googleapis.com"}
    )
    return GeminiProvider("google", config)


def test_error_fields(adapter: GeminiProvider) -> None:
    invalid_key = {
        "error": {
            "code": 400,
            "message": "API key not valid.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    fields = adapter.error_fields(invalid_key, {})
    assert (fields.message, fields.code, fields.retryable) == (
        "INVALID_ARGUMENT: API key not valid.",
        "invalid_argument",
        True,
    )
    plain = {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
    assert adapter.error_fields(plain, {}).retryable is None  # the status decides: the caller's 400
    for status in ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "PERMISSION_DENIED"):
        assert adapter.error_fields({"error": {"status": status, "message": "m"}}, {}).retryable is True
    assert adapter.error_fields([plain], {}).message == "INVALID_ARGUMENT: bad"
    assert adapter.error_fields("junk", {}).message is None


def test_heads_are_built_once_per_model(adapter: GeminiProvider) -> None:
    heads = adapter.heads("gemini-2.5-flash")
    assert adapter.heads("gemini-2.5-flash") is heads
    assert heads.chat.startswith(b"POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\n")
    assert b"x-goog-api-key: AIzaSECRET\r\n" in heads.chat
    assert heads.stream.startswith(b"POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1")
    assert b"Accept: text/event-stream" in heads.stream
    assert adapter.mask("key AIzaSECRET leaked") == "key *** leaked"


# ---------------------------------------------------------------------------------- token source


class FakeCredentials:
    """google-auth's credentials interface: ``refresh(request)`` sets ``token`` and ``expiry`` (naive UTC)."""

    def __init__(self, lifetime: float = 3600, fail: bool = False, pause: float = 0.0) -> None:
        self.lifetime, self.fail, self.pause = lifetime, fail, pause
        self.token: str | None = None
        self.expiry: datetime | None = None
        self.calls = 0
        self.threads: set[str] = set()

    def refresh(self, request: Any) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.pause)
        if self.fail:
            raise RuntimeError(f"token endpoint said no to {self.token or 'ya29.previous-token'}")
        self.token = f"ya29.token-{self.calls}"
        self.expiry = (datetime.now(UTC) + timedelta(seconds=self.lifetime)).replace(tzinfo=None)


def source(credentials: FakeCredentials) -> tuple[TokenSource, RotatingMask]:
    mask = RotatingMask(SecretMask(["fixed-secret"]))
    return TokenSource("gcp", credentials, mask, request=object()), mask


async def test_one_refresh_shared_by_concurrent_requests_in_a_thread() -> None:
    credentials = FakeCredentials(pause=0.05)
    tokens, mask = source(credentials)
    got = await asyncio.gather(*(tokens.token(5) for _ in range(20)))
    assert set(got) == {"ya29.token-1"} and credentials.calls == 1
    assert threading.main_thread().name not in credentials.threads
    assert mask("Bearer ya29.token-1 and fixed-secret") == "Bearer *** and ***"
    assert await tokens.token(5) == "ya29.token-1" and credentials.calls == 1  # cached
    tokens.close()


async def test_refreshed_in_the_background_before_expiry() -> None:
    credentials = FakeCredentials(lifetime=12.2)  # refresh at half life (6.1 s) is too slow: force the window
    tokens, _ = source(credentials)
    assert await tokens.token(5) == "ya29.token-1"
    tokens._refresh_at = 0.0  # inside the refresh window, still valid
    assert await tokens.token(5) == "ya29.token-1"  # served at once...
    for _ in range(100):
        await asyncio.sleep(0.01)
        if credentials.calls == 2:
            break
    assert credentials.calls == 2 and await tokens.token(5) == "ya29.token-2"  # ...and replaced behind it
    tokens.close()


async def test_the_timer_refreshes_without_traffic() -> None:
    credentials = FakeCredentials(lifetime=10.4)  # usable for 0.4 s (10 s skew); refreshed at 5.2 s...
    tokens, _ = source(credentials)
    await tokens.token(5)
    tokens._schedule(0.05)  # ...so bring the timer forward
    await asyncio.sleep(0.3)
    assert credentials.calls == 2
    tokens.close()


async def test_a_failing_endpoint_is_retryable_and_masked() -> None:
    credentials = FakeCredentials(fail=True)
    tokens, _ = source(credentials)
    credentials.token = "ya29.previous-token"
    tokens._mask.add("ya29.previous-token")
    with pytest.raises(ProviderUnreachable) as caught:
        await tokens.token(5)
    assert caught.value.retryable
    assert "ya29.previous-token" not in caught.value.message and "***" in caught.value.message
    assert caught.value.message.startswith("gcp: could not obtain a Google access token (RuntimeError:")


async def test_a_slow_endpoint_times_out() -> None:
    tokens, _ = source(FakeCredentials(pause=0.5))
    with pytest.raises(ProviderUnreachable, match="did not answer in time"):
        await tokens.token(0.05)
    await asyncio.sleep(0.6)  # the refresh itself finishes, and serves the next request
    assert await tokens.token(0.05) == "ya29.token-1"
    tokens.close()

"""Helpers for the response cache's end-to-end tests: a caller (the ``openai`` SDK and raw httpx with one API
key), SSE reading, and a view of what the gateway's cache holds, to wait for a write made after the answer.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import redis

from llm_gateway.cache import MemoryCache, RedisCache
from tests.harness import GatewayServer
from tests.identity_support import create_key

MESSAGES = [{"role": "user", "content": "Say hello."}]
JSON = dict[str, Any]


class Caller:
    """One API key (so one user) talking to one gateway, through the SDK and through raw HTTP."""

    def __init__(self, gateway: GatewayServer, key: str) -> None:
        self.key = key
        self.sdk = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0, timeout=20)
        self.http = httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key}"}, timeout=20)
        self.last_body = b""  # the bytes of the last answer to ``create``

    def create(self, headers: dict[str, str] | None = None, **body: Any) -> tuple[httpx.Headers, JSON]:
        """A non-streaming completion through the SDK: the response headers and the body as sent (parsed JSON)."""
        raw = self.sdk.chat.completions.with_raw_response.create(extra_headers=headers, **body)
        self.last_body = raw.content
        answer: JSON = orjson.loads(raw.content)
        return raw.headers, answer

    def post(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        """Exactly these request bytes."""
        return self.http.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json", **(headers or {})}
        )

    def stream(self, body: JSON, headers: dict[str, str] | None = None) -> tuple[httpx.Response, list[bytes]]:
        """A streamed completion over raw SSE: the response and every ``data:`` payload, ``[DONE]`` included."""
        with self.http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers) as answer:
            lines = [line for line in answer.iter_lines() if line]
        assert all(line.startswith("data: ") for line in lines), lines
        return answer, [line[len("data: ") :].encode() for line in lines]

    def usage(self) -> JSON:
        response = self.http.get("/v1/usage")
        assert response.status_code == 200, response.text
        report: JSON = response.json()
        return report

    def usage_after(self, requests: int, timeout: float = 5.0) -> JSON:
        """``/v1/usage`` once the ledger (written in the background) shows ``requests`` requests."""
        deadline = time.monotonic() + timeout
        while (report := self.usage())["requests"] < requests:
            assert time.monotonic() < deadline, report
            time.sleep(0.05)
        assert report["requests"] == requests, report
        return report

    def close(self) -> None:
        self.sdk.close()
        self.http.close()


MakeCaller = Callable[..., Caller]


@contextlib.contextmanager
def caller_pool() -> Iterator[MakeCaller]:
    """``make(gateway, user_id, **key_fields)``: a new key for ``user_id`` and a Caller with it; all closed at exit."""
    made: list[Caller] = []

    def make(gateway: GatewayServer, user_id: str = "alice", **key_fields: Any) -> Caller:
        caller = Caller(gateway, create_key(gateway.base_url, user_id, **key_fields))
        made.append(caller)
        return caller

    try:
        yield make
    finally:
        for caller in made:
            caller.close()


def redis_env(redis_url: str) -> dict[str, str]:
    """Point a gateway at Redis under a prefix of its own, so tests sharing the session's Redis never meet."""
    return {"REDIS_URL": redis_url, "REDIS_PREFIX": f"test:e2e:{uuid.uuid4().hex[:12]}:"}


def chunks(payloads: list[bytes]) -> list[JSON]:
    """The parsed chunks of a clean stream (its last payload must be ``[DONE]``)."""
    assert payloads and payloads[-1] == b"[DONE]", payloads[-3:]
    parsed = [orjson.loads(payload) for payload in payloads[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in parsed)
    return parsed


def stream_text(parsed: list[JSON]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in parsed if chunk["choices"])


def response_cache(gateway: GatewayServer) -> MemoryCache | RedisCache:
    """The cache object of a gateway running in this process (the harness runs it in a thread)."""
    cache = gateway._server.config.app.state.pipeline.cache
    assert isinstance(cache, MemoryCache | RedisCache), cache
    return cache


def stored_entries(gateway: GatewayServer) -> int:
    cache = response_cache(gateway)
    if isinstance(cache, MemoryCache):
        return len(cache)
    url = gateway.config.settings.redis_url
    assert url is not None
    with redis.Redis.from_url(url.get_secret_value()) as client:
        return sum(1 for _ in client.scan_iter(match=cache.prefix + "*", count=1000))


def wait_for_entries(gateway: GatewayServer, count: int, timeout: float = 5.0) -> None:
    """A stream's answer is stored after its last byte is sent (off the answer's path): wait for it."""
    deadline = time.monotonic() + timeout
    while stored_entries(gateway) < count:
        assert time.monotonic() < deadline, f"the cache holds {stored_entries(gateway)} entries, not {count}"
        time.sleep(0.02)
    assert stored_entries(gateway) == count

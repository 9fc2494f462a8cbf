"""Bad input gets the right status in OpenAI's envelope, and the upstream is never called."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import admin_usage, set_user, wait_for

pytestmark = pytest.mark.integration

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def assert_envelope(
    response: httpx.Response, status: int, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'"a string"', None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": 42, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "gpt-4o-mini"}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": []}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": [{"content": "no role"}]}', "messages[0]"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}', "max_tokens"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
            "temperature",
        ),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": true}', "n"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream_options": 1}',
            "stream_options",
        ),
    ],
)
def test_invalid_requests_are_400_and_never_reach_upstream(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], payload: bytes, param: str | None
) -> None:
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions", content=payload, headers={"content-type": "application/json"}
    )
    error = assert_envelope(response, 400, param=param)
    assert error["type"] == "invalid_request_error"
    assert sum(fake.count for fake in fakes.values()) == 0


def test_untranslatable_request_for_anthropic_is_400(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    body = {
        **GOOD,
        "model": "anthropic/claude-3-5-haiku-latest",
        "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}],
    }
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body)
    assert_envelope(response, 400)
    assert fakes["anthropic"].count == 0


def test_oversized_body_is_413_by_content_length(
    start_gateway: Any, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "MAX_REQUEST_BYTES": "2048"})
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 4096}]}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=big)
    assert_envelope(response, 413, code="request_too_large")
    assert fakes["openai"].count == 0


def test_oversized_chunked_body_is_413_without_reading_it_whole(
    start_gateway: Any, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "MAX_REQUEST_BYTES": "2048"})

    def chunks() -> Any:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}]}'

    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_envelope(response, 413, code="request_too_large")
    assert fakes["openai"].count == 0


def test_lying_content_length_does_not_hang(gateway: GatewayServer) -> None:
    """A body shorter than its Content-Length: the server waits for the rest, the client gives up, nothing leaks."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{}"
        )
        sock.shutdown(socket.SHUT_WR)
        data = sock.recv(65536)
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
    assert httpx.get(f"{gateway.base_url}/health").status_code == 200


def test_unknown_path_and_wrong_method_use_the_envelope(gateway: GatewayServer) -> None:
    assert_envelope(httpx.get(f"{gateway.base_url}/v1/nope"), 404, code="not_found")
    assert_envelope(httpx.get(f"{gateway.base_url}/v1/chat/completions"), 405, code="method_not_allowed")


def test_health_root_docs_and_openapi(gateway: GatewayServer) -> None:
    assert httpx.get(f"{gateway.base_url}/health").json() == {"status": "ok"}
    root = httpx.get(f"{gateway.base_url}/").json()
    assert root["name"] == "llm-gateway" and "/v1/chat/completions" in root["endpoints"]
    docs = httpx.get(f"{gateway.base_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = httpx.get(f"{gateway.base_url}/openapi.json").json()
    request_body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert request_body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    assert "messages" in schema["components"]["schemas"]["ChatCompletionRequest"]["required"]
    assert "/v1/models" in schema["paths"]


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# Each of these was a 500 (the depth: ``orjson.dumps`` in the cache key stops at 255 levels; ``tools``: the
# token estimate iterated it), passed through unchecked, or reserved more choices than MAX_CHOICES allows.
HARDENING_CASES = [
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": '
                 + nested(300) + b"}", "metadata", "nested deeper than 64 levels", id="depth-300"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "tools": 5}',
                 "tools", "'tools' must be an array", id="tools-5"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "tools": [5]}',
                 "tools[0]", "tool must be an object", id="tools-[5]"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "assistant", "tool_calls": "x"}]}',
                 "messages[0].tool_calls", "'tool_calls' must be an array", id="tool_calls-x"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 17}',
                 "n", "at most 16", id="n-17"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "param", "message"), HARDENING_CASES)
def test_malformed_fields_the_gateway_reads_are_400_and_nothing_is_charged(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], payload: bytes, param: str, message: str
) -> None:
    set_user(gateway.base_url, "carol", monthly_token_budget=100_000)
    key = create_key(gateway.base_url, "carol", rate_limit_per_minute=10)
    url = f"{gateway.base_url}/v1/chat/completions"
    headers = {"content-type": "application/json", "x-api-key": key}

    for _ in range(3):
        error = assert_envelope(httpx.post(url, content=payload, headers=headers), 400, param=param)
        assert error["type"] == "invalid_request_error" and message in error["message"], error
    assert sum(fake.count for fake in fakes.values()) == 0

    # One good request after three refused ones: it is the first the limits and the ledger ever saw.
    good = httpx.post(url, json=GOOD, headers=headers)
    assert good.status_code == 200, good.text
    assert good.headers["x-ratelimit-remaining-requests"] == "9"
    usage = wait_for(lambda: (report := admin_usage(gateway.base_url, "carol"))["requests"] and report, what="usage")
    assert usage["requests"] == 1 and usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == sum(entry["prompt_tokens"] + entry["completion_tokens"]
                                       for entry in usage["by_model"].values())  # fmt: skip

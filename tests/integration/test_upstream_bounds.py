"""What an upstream may send is bounded, and what it says back carries no secret: seen with the openai SDK.

Large answers arrive whole; an answer past MAX_RESPONSE_BYTES is refused as soon as it passes it (or
announces it); an event stream whose line never ends, or whose body passes the bound, ends with the
stream's error event; a POST the upstream read and dropped is not sent to it again; the upstream's
Retry-After reaches the caller; configured header values are masked in relayed upstream errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from pydantic import SecretStr

from llm_gateway.errors import ProviderRejected
from llm_gateway.http import UpstreamBounds
from llm_gateway.providers.registry import provider_class
from llm_gateway.settings import ProviderConfig
from tests.fakes import Drop, EchoHeaders, Fail, FakeProvider, Flood, Reply
from tests.harness import GatewayServer
from tests.sdk_support import MakeSdk, sse_payloads

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello."}]
LIMIT = 1 << 20  # MAX_RESPONSE_BYTES in these tests
LINE_LIMIT = 64 * 1024  # MAX_SSE_LINE_BYTES


@pytest.fixture
def gateway(start_gateway: Any, fake_env: dict[str, str]) -> GatewayServer:
    env = {**fake_env, "CACHE_ENABLED": "false", "UPSTREAM_TIMEOUT_SECONDS": "20"}
    server: GatewayServer = start_gateway(env)
    return server


@pytest.fixture
def bounded(start_gateway: Any, fake_env: dict[str, str]) -> GatewayServer:
    env = {
        **fake_env,
        "CACHE_ENABLED": "false",
        "UPSTREAM_TIMEOUT_SECONDS": "20",
        "MAX_RESPONSE_BYTES": str(LIMIT),
        "MAX_SSE_LINE_BYTES": str(LINE_LIMIT),
    }
    server: GatewayServer = start_gateway(env)
    return server


@pytest.mark.parametrize("size", [650_000, 10_000_000])
def test_a_large_answer_arrives_whole(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], sdk: MakeSdk, size: int
) -> None:
    """Past 256 KiB a non-streamed answer used to hang until the attempt timeout."""
    fakes["openai"].push(Reply("x" * size))
    started = time.monotonic()
    completion = sdk(gateway).chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert time.monotonic() - started < 10
    assert completion.choices[0].message.content == "x" * size
    assert completion.choices[0].finish_reason == "stop"
    assert fakes["openai"].count == 1


def refused_envelope(code: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"All providers failed for model 'openai/gpt-4o-mini': openai: {code}",
            "type": "api_error",
            "param": None,
            "code": "all_providers_failed",
            "attempts": [{"provider": "openai", "model": "gpt-4o-mini", "status": None, "error": code}],
        }
    }


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
def test_an_answer_over_the_limit_is_refused_at_once(
    bounded: GatewayServer, fakes: dict[str, FakeProvider], sdk: MakeSdk, announce: bool
) -> None:
    fakes["openai"].push(Flood(1 << 30, announce=announce))  # 1 GiB, announced or not
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(bounded).chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert time.monotonic() - started < 1.0  # not the upstream timeout (20 s), not 1 GiB read
    assert caught.value.status_code == 502
    assert caught.value.response.json() == refused_envelope("upstream_bad_response")


def stream_body(model: str = "openai/gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": True}


FIRST_CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
)


def test_an_event_stream_line_that_never_ends_ends_the_stream_with_an_error(
    bounded: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(
        Flood(1 << 30, prefix=FIRST_CHUNK + b"data: ", content_type="text/event-stream", announce=False)
    )
    started = time.monotonic()
    response, events = sse_payloads(bounded.base_url, stream_body())
    assert time.monotonic() - started < 2.0
    assert response.status_code == 200
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "Hi"
    assert len(events) == 2 and b"[DONE]" not in events
    assert orjson.loads(events[1]) == {
        "error": {
            "message": "openai sent too large an answer",
            "type": "api_error",
            "param": None,
            "code": "upstream_stream_error",
        }
    }


def test_an_event_stream_over_the_response_limit_ends_with_an_error(
    bounded: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    """Lines within their bound, but more of them than MAX_RESPONSE_BYTES allows in all."""
    line = b": " + b"k" * 1000 + b"\n"  # comments: never a chunk, only bytes
    fakes["openai"].push(
        Flood(
            LIMIT * 4,
            prefix=FIRST_CHUNK + line * (LIMIT // len(line) + 10),
            content_type="text/event-stream",
            announce=False,
        )
    )
    response, events = sse_payloads(bounded.base_url, stream_body())
    assert response.status_code == 200 and len(events) == 2
    assert orjson.loads(events[1])["error"]["code"] == "upstream_stream_error"
    assert orjson.loads(events[1])["error"]["message"] == "openai sent too large an answer"


def test_a_post_the_upstream_read_and_dropped_is_not_sent_to_it_again(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], sdk: MakeSdk
) -> None:
    """On a pooled connection the request went out; the upstream closed without a byte of answer. It may
    have generated (and billed) it: the router falls over to the next deployment, never re-sends it there."""
    client = sdk(gateway)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # warms OpenAI's pool
    fakes["openai"].push(Drop())
    response = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.headers["x-gateway-provider"] == "anthropic"
    assert response.headers["x-gateway-attempts"] == "2"
    assert response.parse().choices[0].message.content == "Hello from anthropic"
    assert fakes["openai"].count == 2  # the warm-up and the dropped one: once each


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"retry-after-ms": "12500"}, 12.5),
        (529, {"retry-after": "7"}, 7.0),
        (503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: now
        (400, {"retry-after": "3"}, 3.0),
        (429, {}, None),
    ],
)
async def test_the_upstreams_retry_after_is_carried_by_the_refusal(
    fakes: dict[str, FakeProvider], kind: str, status: int, headers: dict[str, str], expected: float | None
) -> None:
    fake = fakes[kind]
    fake.push(Fail(status, headers=headers))
    config = ProviderConfig(type=kind, api_key=SecretStr(fake.api_key), base_url=fake.base_url)  # type: ignore[arg-type]
    provider = provider_class(kind)(kind, config, UpstreamBounds())
    try:
        with pytest.raises(ProviderRejected) as caught:
            await provider.chat({"messages": MESSAGES, "max_tokens": 16}, "some-model", timeout=5)
    finally:
        await provider.aclose()
    assert (caught.value.upstream_status, caught.value.retry_after_seconds) == (status, expected)


# -- Secrets: every configured header value is masked in what the upstream's errors say ------------------


@pytest.fixture
def secret_headers() -> dict[str, str]:
    return {
        "openai": "org-" + "7" * 24,
        "azure": "azkey-" + "8" * 24,
        "anthropic": "anthro-extra-" + "9" * 20,
    }


@pytest.fixture
def masked(
    start_gateway: Any,
    fake_env: dict[str, str],
    fakes: dict[str, FakeProvider],
    tmp_path: Path,
    secret_headers: dict[str, str],
) -> GatewayServer:
    config = {
        "providers": {
            "openai": {
                "type": "openai",
                "api_key": fakes["openai"].api_key,
                "base_url": fakes["openai"].base_url,
                "headers": {"OpenAI-Organization": secret_headers["openai"], "api-key": secret_headers["azure"]},
            },
            "anthropic": {
                "type": "anthropic",
                "api_key": fakes["anthropic"].api_key,
                "base_url": fakes["anthropic"].base_url,
                "headers": {"x-proxy-token": secret_headers["anthropic"]},
            },
        },
        "models": {
            "via-openai": [{"provider": "openai", "model": "gpt-4o-mini"}],
            "via-anthropic": [{"provider": "anthropic", "model": "claude-3-5-haiku-latest"}],
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(orjson.dumps(config).decode())  # JSON is YAML
    server: GatewayServer = start_gateway({**fake_env, "GATEWAY_CONFIG": str(path), "CACHE_ENABLED": "false"})
    return server


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_configured_header_values_are_masked_in_upstream_errors(
    masked: GatewayServer,
    fakes: dict[str, FakeProvider],
    sdk: MakeSdk,
    secret_headers: dict[str, str],
    provider: str,
) -> None:
    secrets = [*secret_headers.values(), fakes[provider].api_key]
    client = sdk(masked)
    fakes[provider].push(EchoHeaders(400))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=f"via-{provider}", messages=MESSAGES)
    message = caught.value.response.json()["error"]["message"]
    assert "request refused; headers received: " in message
    assert "***" in message
    assert not [secret for secret in secrets if secret in message]

    fakes[provider].push(EchoHeaders(in_stream=True))
    response, events = sse_payloads(masked.base_url, stream_body(f"via-{provider}"))
    assert response.status_code == 200 and b"[DONE]" not in events
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_stream_error"
    assert "request refused; headers received: " in error["message"] and "***" in error["message"]
    assert not [secret for secret in secrets if secret in error["message"]]

"""The Messages API passed through to an ``anthropic`` deployment natively, against the fake Anthropic on a real socket.

The body arrives upstream as the caller sent it but for ``model``; the caller's ``anthropic-version`` and
``anthropic-beta`` go with it, its credentials never do; the answer's bytes (thinking and signatures
included) and each stream event come back as they were sent; usage counts cache reads and writes;
failures are the gateway's errors; streams are bounded and release their connection however they end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from llm_gateway.errors import InvalidRequest, ProviderProtocolError, ProviderRejected, UpstreamStreamError
from llm_gateway.http import UpstreamBounds
from llm_gateway.providers.anthropic.client import AnthropicProvider
from llm_gateway.providers.anthropic.native import MAX_CACHED_HEADS
from llm_gateway.providers.base import NativeMessages
from llm_gateway.providers.registry import provider_class
from llm_gateway.schemas.core import Usage
from llm_gateway.settings import ProviderConfig
from tests.fakes import Fail, FakeProvider, Flood, Raw, Reply, Stall, StreamError
from tests.fakes.anthropic_wire import count_tokens, thinking_signature
from tests.fakes.sse import dumps
from tests.native_streams import collect, parse

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-20250514"
CALLER = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
    "x-api-key": "gw-caller-key-must-not-travel",
    "authorization": "Bearer gw-caller-token-must-not-travel",
}
LINE_LIMIT = 64 * 1024


def caller_body(**extra: Any) -> dict[str, Any]:
    """What Claude Code sends: thinking, cache_control, a document block, metadata; ``model`` not first."""
    return {
        "max_tokens": 2048,
        "model": "claude-sonnet-4",
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "é ü"}},
                    {"type": "text", "text": "Summarise.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                ],
            }
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
        **extra,
    }


@pytest.fixture
async def provider(anthropic_fake: FakeProvider) -> AsyncIterator[AnthropicProvider]:
    config = ProviderConfig(
        type="anthropic", api_key=SecretStr(anthropic_fake.api_key), base_url=anthropic_fake.base_url
    )
    adapter = AnthropicProvider("anthropic", config, UpstreamBounds(max_sse_line_bytes=LINE_LIMIT))
    yield adapter
    await adapter.aclose()


# -- messages() ------------------------------------------------------------------------------------


async def test_a_message_round_trip_changes_only_the_model(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    assert isinstance(provider, NativeMessages)
    native: NativeMessages = provider  # the adapter offers the Messages surface's protocol
    anthropic_fake.push(
        Reply("Short.", thinking="Read it; say little.", cache_creation_tokens=30, cache_read_tokens=40)
    )
    body = caller_body()
    message = await native.messages(body, MODEL, timeout=5, headers=CALLER)

    sent = anthropic_fake.chat_requests[0]
    assert sent.raw == orjson.dumps({**body, "model": MODEL})  # the caller's bytes and key order, model replaced
    assert list(sent.body) == list(body)
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == CALLER["anthropic-beta"]
    assert sent.headers["x-api-key"] == anthropic_fake.api_key
    assert "authorization" not in sent.headers
    assert "gw-caller" not in str(sent.headers)

    assert message.raw == dumps(message.body).encode()  # relayed as the fake wrote it
    assert message.body["model"] == MODEL and message.body["type"] == "message"
    assert message.body["content"] == [
        {
            "type": "thinking",
            "thinking": "Read it; say little.",
            "signature": thinking_signature("Read it; say little."),
        },
        {"type": "text", "text": "Short."},
    ]
    assert message.body["usage"] == {
        "input_tokens": 11,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 40,
        "output_tokens": 7,
    }
    assert message.usage == Usage(prompt_tokens=81, completion_tokens=7, cached_tokens=40)


async def test_only_an_anthropic_deployment_takes_messages_natively() -> None:
    config = ProviderConfig(type="openai", api_key=SecretStr("sk-x"), base_url="http://127.0.0.1:9/v1")
    openai_compatible = provider_class("openai")("openai", config, UpstreamBounds())
    try:
        assert not isinstance(openai_compatible, NativeMessages)
    finally:
        await openai_compatible.aclose()


@pytest.mark.parametrize(
    ("headers", "version", "beta"),
    [
        ({}, "2023-06-01", None),  # the adapter's default
        ({"anthropic-version": "2099-01-01"}, "2099-01-01", None),
        ({"Anthropic-Beta": "token-counting-2024-11-01"}, "2023-06-01", "token-counting-2024-11-01"),
    ],
)
async def test_the_callers_version_replaces_the_default_and_its_beta_is_added(
    provider: AnthropicProvider,
    anthropic_fake: FakeProvider,
    headers: dict[str, str],
    version: str,
    beta: str | None,
) -> None:
    await provider.messages(caller_body(), MODEL, timeout=5, headers=headers)
    await provider.messages(caller_body(stream=False), MODEL, timeout=5, headers=headers)
    for sent in anthropic_fake.chat_requests:
        assert (sent.headers["anthropic-version"], sent.headers.get("anthropic-beta")) == (version, beta)
        assert "stream" not in sent.body or sent.body["stream"] is False
    assert len(provider._native_heads) == 1  # one head per (version, beta), built once


async def test_heads_are_cached_per_pair_up_to_a_bound(provider: AnthropicProvider) -> None:
    heads = provider._native_heads
    first = heads.get({"anthropic-beta": "b0"})
    assert heads.get({"anthropic-beta": "b0", "x-api-key": "ignored"}) is first
    for n in range(MAX_CACHED_HEADS + 10):
        assert b"\r\nanthropic-beta: b%d\r\n" % n in heads.get({"anthropic-beta": f"b{n}"}).message
    assert len(heads) == MAX_CACHED_HEADS
    past = heads.get({"anthropic-beta": f"b{MAX_CACHED_HEADS + 5}"})
    assert past.count_tokens.startswith(b"POST /v1/messages/count_tokens HTTP/1.1\r\n")
    assert b"Accept: text/event-stream" in past.stream and b"gw-caller" not in past.stream


@pytest.mark.parametrize("value", ["2023-06-01\r\nx-api-key: stolen", "beta\n", "bé"])
async def test_a_header_value_that_could_break_the_head_is_refused(provider: AnthropicProvider, value: str) -> None:
    with pytest.raises(InvalidRequest):
        await provider.messages(caller_body(), MODEL, timeout=5, headers={"anthropic-beta": value})


async def test_a_200_that_is_not_a_message_is_a_protocol_error(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push(Raw(200, b'{"type":"completion","completion":"hi"}'))
    with pytest.raises(ProviderProtocolError):
        await provider.messages(caller_body(), MODEL, timeout=5, headers=CALLER)


async def test_overloaded_is_a_retryable_refusal_with_retry_after_and_no_secret(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push(
        Fail(529, headers={"retry-after": "7"}),
        Fail(400, f"key {anthropic_fake.api_key} may not use thinking"),
        Fail(529, headers={"retry-after": "3"}),
    )
    with pytest.raises(ProviderRejected) as overloaded:
        await provider.messages(caller_body(), MODEL, timeout=5, headers=CALLER)
    assert (overloaded.value.upstream_status, overloaded.value.retryable) == (529, True)
    assert overloaded.value.retry_after_seconds == 7.0
    with pytest.raises(ProviderRejected) as refused:
        await provider.messages(caller_body(), MODEL, timeout=5, headers=CALLER)
    assert (refused.value.upstream_status, refused.value.retryable) == (400, False)
    assert refused.value.message == "invalid_request_error: key *** may not use thinking"
    with pytest.raises(ProviderRejected) as stream_refused:
        await provider.messages_stream(caller_body(), MODEL, timeout=5, deadline=_later(), headers=CALLER)
    assert (stream_refused.value.upstream_status, stream_refused.value.retry_after_seconds) == (529, 3.0)
    assert provider.transport.open_connections <= 1  # the refusals' connections were released


# -- messages_stream() -------------------------------------------------------------------------------


def _later(seconds: float = 30) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_a_stream_is_relayed_event_by_event_with_ping_and_usage(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push(Reply("Short answer.", thinking="Think.", cache_creation_tokens=5, cache_read_tokens=9))
    body = caller_body(stream=True)
    stream = await provider.messages_stream(body, MODEL, timeout=5, deadline=_later(), headers=CALLER)
    events = [parse(item) for item in await collect(stream)]

    sent = anthropic_fake.chat_requests[0]
    assert sent.raw == orjson.dumps({**body, "model": MODEL})
    assert sent.headers["accept"] == "text/event-stream" and "authorization" not in sent.headers
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [data["delta"] for name, data in events if name == "content_block_delta"] == [
        {"type": "thinking_delta", "thinking": "Think."},
        {"type": "signature_delta", "signature": thinking_signature("Think.")},
        {"type": "text_delta", "text": "Short"},
        {"type": "text_delta", "text": " answer."},
    ]
    assert events[0][1]["message"]["usage"]["cache_read_input_tokens"] == 9
    assert stream.usage == Usage(prompt_tokens=11 + 5 + 9, completion_tokens=7, cached_tokens=9)


async def test_each_event_goes_out_as_it_arrives(provider: AnthropicProvider, anthropic_fake: FakeProvider) -> None:
    """The upstream stalls after its first content event: what came before is already the caller's."""
    anthropic_fake.push(Stall(1, 30, reply=Reply("one two three")))
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=60, deadline=_later(60), headers=CALLER)
    started = time.monotonic()
    names = []
    async with asyncio.timeout(5):
        async for item in stream:
            names.append(parse(item)[0])
            if names[-1] == "content_block_delta":
                break
    assert time.monotonic() - started < 5
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta"]
    await stream.aclose()
    assert provider.transport.open_connections == 0  # cut mid-body: closed, not pooled


async def test_a_cancelled_stream_releases_its_connection(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push(Stall(1, 30, reply=Reply("one two three")), Reply("whole"))
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=60, deadline=_later(60), headers=CALLER)
    reader = asyncio.create_task(collect(stream))
    await asyncio.sleep(0.3)  # inside the stall, awaiting the next event
    assert provider.transport.open_connections == 1
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await stream.aclose()
    assert provider.transport.open_connections == 0

    whole = await provider.messages_stream(caller_body(), MODEL, timeout=5, deadline=_later(), headers=CALLER)
    assert parse((await collect(whole))[-1])[0] == "message_stop"
    assert provider.transport.open_connections <= 1
    assert provider.transport.idle_connections == provider.transport.open_connections  # none left in use


async def test_a_stream_closed_before_its_first_read_releases_its_connection(provider: AnthropicProvider) -> None:
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=5, deadline=_later(), headers=CALLER)
    assert provider.transport.open_connections == 1
    await stream.aclose()
    await stream.aclose()  # twice is harmless
    assert provider.transport.open_connections == 0


async def test_an_error_event_mid_stream_fails_it_with_the_message_masked(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push(StreamError(1, message=f"overloaded for key {anthropic_fake.api_key}"))
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=5, deadline=_later(), headers=CALLER)
    names = []
    with pytest.raises(UpstreamStreamError) as caught:
        async for item in stream:
            names.append(parse(item)[0])
    await stream.aclose()
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta"]  # the error is not relayed
    assert caught.value.message == "overloaded_error: overloaded for key ***"
    assert caught.value.provider == "anthropic"
    assert provider.transport.idle_connections == provider.transport.open_connections  # released: none in use


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data)) for name, data in events)


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": [],
                    "usage": {"input_tokens": 3, "cache_creation_input_tokens": None, "output_tokens": 1}},
    },
)  # fmt: skip


async def test_a_stream_that_ends_without_message_stop_is_an_error(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push(Raw(200, sse(START, ("ping", {"type": "ping"})), "text/event-stream"))
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=5, deadline=_later(), headers=CALLER)
    names = []
    with pytest.raises(UpstreamStreamError, match="ended the stream before message_stop"):
        async for item in stream:
            names.append(parse(item)[0])
    await stream.aclose()
    assert names == ["message_start", "ping"]


async def test_message_delta_updates_usage_and_multi_line_data_keeps_its_framing(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 12}}  # fmt: skip
    raw = sse(START, ("message_delta", delta)) + b'event: message_stop\ndata: {"type":\ndata: "message_stop"}\n\n'
    anthropic_fake.push(Raw(200, raw, "text/event-stream"))
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=5, deadline=_later(), headers=CALLER)
    items = await collect(stream)
    assert b"".join(items) == raw  # relayed byte for byte
    assert stream.usage == Usage(prompt_tokens=4 + 6, completion_tokens=12, cached_tokens=6)


async def test_an_event_stream_line_past_the_bound_ends_the_stream(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    prefix = sse(START) + b"event: content_block_delta\ndata: "
    anthropic_fake.push(Flood(1 << 30, prefix=prefix, content_type="text/event-stream", announce=False))
    started = time.monotonic()
    stream = await provider.messages_stream(caller_body(), MODEL, timeout=20, deadline=_later(), headers=CALLER)
    names = []
    with pytest.raises(UpstreamStreamError, match="anthropic sent too large an answer"):
        async for item in stream:
            names.append(parse(item)[0])
    await stream.aclose()
    assert time.monotonic() - started < 2.0
    assert names == ["message_start"]
    assert provider.transport.open_connections == 0


# -- count_tokens() ----------------------------------------------------------------------------------


async def test_count_tokens_sends_what_the_endpoint_takes(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    body = caller_body(stream=True, temperature=0.2, top_k=5, stop_sequences=["END"], tools=tools,
                       tool_choice={"type": "auto"})  # fmt: skip
    counted = await provider.count_tokens(body, MODEL, timeout=5, headers=CALLER)

    sent = anthropic_fake.count_tokens_requests[0]
    kept = {key: value for key, value in body.items() if key not in
            ("max_tokens", "metadata", "stream", "temperature", "top_k", "stop_sequences")}  # fmt: skip
    assert sent.raw == orjson.dumps({**kept, "model": MODEL})
    assert counted == count_tokens(sent.body)
    assert sent.headers["anthropic-beta"] == CALLER["anthropic-beta"]
    assert sent.headers["x-api-key"] == anthropic_fake.api_key and "authorization" not in sent.headers
    assert anthropic_fake.count == 0  # no message was created


async def test_count_tokens_failures_are_the_gateways_errors(
    provider: AnthropicProvider, anthropic_fake: FakeProvider
) -> None:
    anthropic_fake.push_count_tokens(Fail(529, headers={"retry-after": "2"}), Raw(200, b'{"tokens": 5}'))
    with pytest.raises(ProviderRejected) as caught:
        await provider.count_tokens(caller_body(), MODEL, timeout=5, headers={})
    assert (caught.value.upstream_status, caught.value.retryable, caught.value.retry_after_seconds) == (529, True, 2.0)
    with pytest.raises(ProviderProtocolError, match="without input_tokens"):
        await provider.count_tokens(caller_body(), MODEL, timeout=5, headers={})

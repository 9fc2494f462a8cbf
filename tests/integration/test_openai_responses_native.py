"""The Responses API passed through to a ``responses: native`` deployment, against the fake OpenAI on a real socket.

The body arrives upstream as the caller sent it but for ``model`` (and ``stream``); the answer's bytes and each
typed event come back as they were sent, re-framed one event per item; usage comes from the terminal event;
refusals, failures and cut streams are the gateway's errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from llm_gateway.errors import (
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnreachable,
    UpstreamStreamError,
)
from llm_gateway.http import UpstreamBounds
from llm_gateway.providers.base import NativeResponses
from llm_gateway.providers.openai_compat import OpenAICompatProvider
from llm_gateway.providers.openai_responses import OpenAIResponsesProvider, responses_usage
from llm_gateway.providers.registry import build_providers
from llm_gateway.schemas.core import Usage
from llm_gateway.settings import ProviderConfig
from tests.fakes import Fail, FailMidStream, FakeProvider, Flood, Raw, Reply, Stall, StreamError
from tests.fakes.responses_wire import ResponsesWire
from tests.fakes.sse import dumps
from tests.native_streams import collect, names_until, parse

pytestmark = pytest.mark.integration

MODEL = "gpt-4.1-2025-04-14"
LINE_LIMIT = 64 * 1024
TOOL_CALL = {"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"é"}'}}


def caller_body(**extra: Any) -> dict[str, Any]:
    """What the Agents SDK sends: instructions, items, tools, metadata; ``model`` not first."""
    return {
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Summarise: é ü"}]}],
        "model": "gpt-4.1",
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}, "strict": False}],
        "metadata": {"run": "r-1"},
        **extra,
    }


@pytest.fixture
async def provider(openai_fake: FakeProvider) -> AsyncIterator[OpenAIResponsesProvider]:
    config = ProviderConfig(type="openai", api_key=SecretStr(openai_fake.api_key), base_url=openai_fake.base_url)
    adapter = OpenAIResponsesProvider("openai", config, UpstreamBounds(max_sse_line_bytes=LINE_LIMIT))
    yield adapter
    await adapter.aclose()


def _later(seconds: float = 30) -> float:
    return asyncio.get_running_loop().time() + seconds


def recorded_stream(reply: Reply) -> bytes:
    """A whole stream as the fake OpenAI writes it, to relay through ``Raw`` and compare byte for byte."""
    planned = ResponsesWire("k").stream({"model": MODEL, "input": "hi"}, reply)
    return b"".join([*planned.head, *(event for chunk in planned.chunks for event in chunk), *planned.tail])


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event)) for event in events)


CREATED = {"type": "response.created", "sequence_number": 0,
           "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}  # fmt: skip


# -- which deployments are native ------------------------------------------------------------------


async def test_only_a_native_deployment_offers_responses() -> None:
    configs = {
        "openai": ProviderConfig(type="openai", api_key=SecretStr("k"), base_url="http://127.0.0.1:9/v1"),
        "groq": ProviderConfig(type="openai", api_key=SecretStr("k"), base_url="http://127.0.0.1:9/openai/v1"),
        "vllm": ProviderConfig(type="openai", api_key=SecretStr("k"), base_url="http://127.0.0.1:9/v1",
                               responses="native"),
        "azure": ProviderConfig(type="openai", api_key=SecretStr("k"), base_url="http://127.0.0.1:9/v1",
                                responses="translated"),
        "anthropic": ProviderConfig(type="anthropic", api_key=SecretStr("k"), base_url="http://127.0.0.1:9"),
    }  # fmt: skip
    providers = build_providers(configs, UpstreamBounds())
    try:
        native = {name for name, provider in providers.items() if isinstance(provider, NativeResponses)}
        assert native == {"openai", "vllm"}
        assert type(providers["groq"]) is OpenAICompatProvider and type(providers["azure"]) is OpenAICompatProvider
        assert isinstance(providers["vllm"], OpenAICompatProvider)  # still a chat and embeddings provider
    finally:
        for provider in providers.values():
            await provider.aclose()


# -- responses() ------------------------------------------------------------------------------------


async def test_a_response_round_trip_changes_only_the_model(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    native: NativeResponses = provider
    openai_fake.push(Reply("Short.", cache_read_tokens=5))
    body = caller_body(stream=True)  # a non-streaming call sets it false
    completion = await native.responses(body, MODEL, timeout=5)

    [sent] = openai_fake.responses_requests
    assert sent.raw == orjson.dumps({**body, "model": MODEL, "stream": False})  # the caller's key order
    assert list(sent.body) == list(body)
    assert (sent.headers["authorization"], sent.headers["accept"]) == (
        f"Bearer {openai_fake.api_key}",
        "application/json",
    )
    assert completion.raw == dumps(completion.body).encode()  # relayed as the fake wrote it
    assert completion.body == openai_fake.stored_responses[completion.body["id"]]
    assert completion.body["output"][0]["content"][0]["text"] == "Short."
    assert completion.usage == Usage(prompt_tokens=11, completion_tokens=7, cached_tokens=5)
    assert completion.model == MODEL


async def test_a_200_that_is_not_a_response_is_a_protocol_error(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    openai_fake.push(Raw(200, b'{"object":"chat.completion","choices":[]}'))
    with pytest.raises(ProviderProtocolError, match="openai answered without a response"):
        await provider.responses(caller_body(), MODEL, timeout=5)


async def test_an_unknown_previous_response_is_the_callers_error_and_5xx_may_fall_back(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    openai_fake.push(Fail(500), Fail(429, headers={"retry-after": "4"}))
    with pytest.raises(ProviderRejected) as server_error:
        await provider.responses(caller_body(), MODEL, timeout=5)
    assert (server_error.value.upstream_status, server_error.value.retryable) == (500, True)
    with pytest.raises(ProviderRejected) as limited:
        await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
    assert (limited.value.retryable, limited.value.retry_after_seconds) == (True, 4.0)

    for call in (provider.responses(caller_body(previous_response_id="resp_gone"), MODEL, timeout=5),
                 provider.responses_stream(caller_body(previous_response_id="resp_gone"), MODEL, timeout=5,
                                           deadline=_later())):  # fmt: skip
        with pytest.raises(ProviderRejected) as refused:
            await call
        assert (refused.value.upstream_status, refused.value.retryable, refused.value.status_code) == (400, False, 400)
        assert refused.value.envelope() == {
            "error": {
                "message": "Previous response with id 'resp_gone' not found.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        }
    assert provider.transport.open_connections <= 1  # the refusals' connections were released


async def test_a_previous_response_of_the_same_upstream_is_passed_through(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    first = await provider.responses(caller_body(), MODEL, timeout=5)
    second = await provider.responses(caller_body(previous_response_id=first.body["id"]), MODEL, timeout=5)
    assert second.body["previous_response_id"] == first.body["id"]
    assert openai_fake.responses_requests[1].body["previous_response_id"] == first.body["id"]


# -- responses_stream() -----------------------------------------------------------------------------


async def test_a_stream_is_relayed_event_by_event_with_usage(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    openai_fake.push(Reply("Short answer.", tool_calls=[TOOL_CALL], prompt_tokens=20, cache_read_tokens=8))
    body = caller_body()
    stream = await provider.responses_stream(body, MODEL, timeout=5, deadline=_later())
    events = [parse(item) for item in await collect(stream)]

    [sent] = openai_fake.responses_requests
    assert sent.raw == orjson.dumps({**body, "model": MODEL, "stream": True})
    assert sent.headers["accept"] == "text/event-stream"
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert stream.usage == Usage(prompt_tokens=20, completion_tokens=7, cached_tokens=8)
    assert stream.response == final  # the terminal event's response, for the surface to keep
    assert final == openai_fake.stored_responses[final["id"]]


async def test_the_upstreams_bytes_come_back_unchanged(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    raw = recorded_stream(Reply("a b c", tool_calls=[TOOL_CALL], finish_reason="length"))
    openai_fake.push(Raw(200, raw, "text/event-stream"))
    stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
    items = await collect(stream)
    assert b"".join(items) == raw
    assert parse(items[-1])[0] == "response.incomplete"  # a terminal event too: cut by max_output_tokens
    assert stream.usage == Usage(prompt_tokens=11, completion_tokens=7)


async def test_unnamed_events_multi_line_data_and_a_trailing_done(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    """A server that sends no ``event:`` lines gets them from each event's type; a data field split over lines
    keeps its framing; a chat-style ``[DONE]`` after the end is never relayed."""
    completed = {"type": "response.completed", "sequence_number": 1,
                 "response": {**CREATED["response"], "status": "completed",
                              "usage": {"input_tokens": 3, "output_tokens": 2}}}  # fmt: skip
    first_line, second_line = orjson.dumps(completed).split(b",", 1)
    split = b"data: %s,\ndata: %s\n\n" % (first_line, second_line)
    raw = b"data: " + orjson.dumps(CREATED) + b"\n\n" + split + b"data: [DONE]\n\n"
    openai_fake.push(Raw(200, raw, "text/event-stream"))
    stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
    items = await collect(stream)
    created = raw[: raw.index(b"\n\n") + 2]
    assert items == [b"event: response.created\n" + created, b"event: response.completed\n" + split]
    assert stream.usage == Usage(prompt_tokens=3, completion_tokens=2)


async def test_response_failed_fails_the_stream_with_the_upstreams_message_masked(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    openai_fake.push(StreamError(1, message=f"overloaded for key {openai_fake.api_key}"))
    stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
    names, caught = await names_until(stream, UpstreamStreamError)
    assert names[-1] == "response.output_text.delta" and len(names) == 5  # response.failed is not relayed
    assert caught.message == "server_error: overloaded for key ***"
    assert (caught.provider, caught.retryable) == ("openai", True)
    assert provider.transport.idle_connections == provider.transport.open_connections  # released: none in use


async def test_an_error_event_mid_stream_fails_it(provider: OpenAIResponsesProvider, openai_fake: FakeProvider) -> None:
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down.", "param": None,
             "sequence_number": 1}  # fmt: skip
    nested = {"type": "error", "sequence_number": 1, "error": {"type": "server_error", "message": "Oops."}}
    for event, message in ((error, "rate_limit_exceeded: Slow down."), (nested, "Oops.")):
        openai_fake.push(Raw(200, sse(CREATED, event), "text/event-stream"))
        stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
        names, caught = await names_until(stream, UpstreamStreamError)
        assert (names, caught.message) == (["response.created"], message)


async def test_an_end_without_a_terminal_event_or_a_cut_fails_the_stream(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    openai_fake.push(Raw(200, sse(CREATED), "text/event-stream"), FailMidStream(2))
    stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
    with pytest.raises(UpstreamStreamError, match=r"openai ended the stream before response\.completed"):
        await collect(stream)
    stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
    names, cut = await names_until(stream, ProviderUnreachable)  # as every stream's cut
    assert cut.message == "openai closed the connection mid-answer"
    assert names[-2:] == ["response.output_text.delta", "response.output_text.delta"]
    assert provider.transport.open_connections == 0


async def test_invalid_events_fail_the_stream(provider: OpenAIResponsesProvider, openai_fake: FakeProvider) -> None:
    bad = (b"event: response.completed\ndata: {not json\n\n", b'data: {"sequence_number":0}\n\n',
           b'event: response.completed\ndata: {"type":"response.completed","response":[]}\n\n')  # fmt: skip
    for raw in bad:
        openai_fake.push(Raw(200, raw, "text/event-stream"))
        stream = await provider.responses_stream(caller_body(), MODEL, timeout=5, deadline=_later())
        with pytest.raises(UpstreamStreamError, match="openai sent an invalid stream event"):
            await collect(stream)


async def test_a_stream_is_bounded_and_releases_its_connection(
    provider: OpenAIResponsesProvider, openai_fake: FakeProvider
) -> None:
    prefix = sse(CREATED) + b"event: response.output_text.delta\ndata: "
    openai_fake.push(
        Flood(1 << 30, prefix=prefix, content_type="text/event-stream", announce=False),
        Stall(1, 30, reply=Reply("one two three")),
    )
    started = time.monotonic()
    stream = await provider.responses_stream(caller_body(), MODEL, timeout=20, deadline=_later())
    with pytest.raises(UpstreamStreamError, match="openai sent too large an answer"):
        await collect(stream)
    assert time.monotonic() - started < 2.0

    stream = await provider.responses_stream(caller_body(), MODEL, timeout=0.3, deadline=_later())
    with pytest.raises(ProviderTimeout):
        await collect(stream)
    assert provider.transport.open_connections == 0


async def test_responses_usage_reads_the_responses_wire() -> None:
    usage = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 2, "total_tokens": 11}
    assert responses_usage(usage) == Usage(prompt_tokens=9, completion_tokens=2, cached_tokens=4)
    assert responses_usage({"input_tokens": 1}) == Usage(prompt_tokens=1)
    assert responses_usage(None) is None and responses_usage({"input_tokens": "many"}) is None

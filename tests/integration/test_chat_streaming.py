"""Streaming end to end: SSE relayed as it arrives, fallback before the first byte, clean failures after it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.fakes import Delay, Fail, FailMidStream, FakeProvider, Raw, Reply, Stall, StreamError
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.sdk_support import sse_payloads

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Say hello."}]
TOOL_CALLS = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
]


_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """An SDK client holds its socket until closed; left to the GC it surfaces later as a ResourceWarning."""
    yield
    while _opened:
        _opened.pop().close()


def client(gateway: GatewayServer) -> openai.OpenAI:
    made = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=create_key(gateway.base_url), max_retries=0, timeout=20
    )
    _opened.append(made)
    return made


def sse_events(gateway: GatewayServer, body: dict[str, object]) -> tuple[httpx.Response, list[bytes]]:
    return sse_payloads(gateway.base_url, body, timeout=20)


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-mini", "openai"),
        ("anthropic/claude-3-5-haiku-latest", "anthropic"),
        ("groq/llama-3.1-8b-instant", "groq"),
    ],
)
def test_stream_from_each_provider(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], model: str, provider: str
) -> None:
    fakes[provider].push(Reply("one two three four", chunks=4))
    with client(gateway).chat.completions.with_streaming_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-gateway-provider"] == provider
        chunks = list(response.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_stream_ends_with_done(gateway: GatewayServer) -> None:
    response, events = sse_events(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    assert events[-1] == b"[DONE]"
    assert all(orjson.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


def test_anthropic_tool_call_stream_in_openai_format(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["anthropic"].push(Reply(tool_calls=TOOL_CALLS))
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("get_weather", "get_time")
    ]
    stream = client(gateway).chat.completions.create(
        model="anthropic/claude-3-5-haiku-latest", messages=MESSAGES, tools=tools, stream=True
    )  # type: ignore[arg-type]

    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name or "") if delta.function else ""
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [orjson.loads(c["arguments"]) for c in calls.values()] == [{"city": "Paris"}, {"tz": "CET"}]
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    sent = fakes["anthropic"].chat_requests[0].body
    assert sent["stream"] is True and sent["tools"][0]["name"] == "get_weather"


@pytest.mark.parametrize("failure", [Fail(500), Fail(529), StreamError(after_chunks=0)])
def test_stream_falls_back_before_first_byte(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], failure: object
) -> None:
    fakes["openai"].push(failure)  # type: ignore[arg-type]
    with client(gateway).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["x-gateway-provider"] == "anthropic"
        assert response.headers["x-gateway-attempts"] == "2"
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "Hello from anthropic"


def test_wrong_content_type_falls_back(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].push(Raw(200, b"<html>gateway error</html>", content_type="text/html"))
    response, events = sse_events(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert response.headers["x-gateway-provider"] == "anthropic"
    assert events[-1] == b"[DONE]"


def test_connection_dropped_mid_stream_ends_client_stream_with_error(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(FailMidStream(after_chunks=2, reply=Reply("a b c d e f", chunks=6)))
    started = time.monotonic()
    response, events = sse_events(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert b"[DONE]" not in events  # never presented as a clean finish
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_unreachable"
    assert error["message"] == "openai closed the connection mid-answer"
    assert fakes["anthropic"].count == 0  # the first byte had gone: no fallback

    fakes["openai"].push(FailMidStream(after_chunks=2, reply=Reply("a b c d e f", chunks=6)))
    with pytest.raises(openai.APIError):
        for _ in client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass


def test_error_event_mid_stream_reaches_the_client(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["anthropic"].push(StreamError(after_chunks=2, reply=Reply("a b c d", chunks=4)))
    _, events = sse_events(
        gateway, {"model": "anthropic/claude-3-5-haiku-latest", "messages": MESSAGES, "stream": True}
    )
    assert b"[DONE]" not in events
    assert "error" in orjson.loads(events[-1])
    relayed = "".join(orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert relayed.split() == ["a", "b"]


def test_stalled_stream_is_cut_by_the_idle_timeout(
    start_gateway: object, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "UPSTREAM_TIMEOUT_SECONDS": "0.5"})  # type: ignore[operator]
    fakes["openai"].push(Stall(after_chunks=1, seconds=5, reply=Reply("a b c", chunks=3)))
    started = time.monotonic()
    _, events = sse_events(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert time.monotonic() - started < 3
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_timeout"


def test_slow_first_byte_falls_back(
    start_gateway: object, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "UPSTREAM_TIMEOUT_SECONDS": "0.5"})  # type: ignore[operator]
    fakes["openai"].push(Delay(5))
    response, events = sse_events(gateway, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert response.headers["x-gateway-provider"] == "anthropic"
    assert events[-1] == b"[DONE]"


def test_chunks_are_relayed_as_they_arrive(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].push(Reply("a b c d e", chunks=5, chunk_delay=0.2))
    arrivals = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        timeout=20,
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    # The first content arrives long before the last: nothing is buffered until the end.
    assert arrivals[0] < 0.5
    assert arrivals[-1] - arrivals[0] > 0.7


def test_every_provider_down_for_a_stream_is_502(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    for fake in fakes.values():
        fake.push(Fail(500))
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 502

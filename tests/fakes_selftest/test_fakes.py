"""The fakes speak the providers' real wire formats: proven with the official OpenAI SDK and raw httpx.

If these fail, every gateway test built on the fakes is suspect, so they run first and fast.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes import (
    EMBEDDING_DIMENSIONS,
    Delay,
    Drop,
    Fail,
    FailMidStream,
    FakeProvider,
    Raw,
    Reply,
    Stall,
    StreamError,
    embedding_base64,
    fake_embedding,
)
from tests.fakes.anthropic_wire import count_tokens, thinking_signature
from tests.fakes.clients import sdk

# Also loaded by tests/conftest.py for the rest of the suite; pytest registers a plugin module once.
pytest_plugins = ["tests.fakes.fixtures"]

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


@pytest.fixture(params=["openai", "groq"])
def openai_like(request: pytest.FixtureRequest) -> FakeProvider:
    """Both OpenAI-format fakes, so each OpenAI test also proves Groq's path and base URL."""
    fake: FakeProvider = request.getfixturevalue(f"{request.param}_fake")
    return fake


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, verify=False) as client:
        yield client


def anthropic_headers(fake: FakeProvider) -> dict[str, str]:
    return {"x-api-key": fake.api_key, "anthropic-version": "2023-06-01"}


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "messages": MESSAGES, **extra}


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name or None, data) per SSE event, as a client would parse them."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


# -- OpenAI and Groq through the official SDK --------------------------------------------------


def test_openai_like_completion(openai_like: FakeProvider) -> None:
    with sdk(openai_like) as client:
        completion = client.chat.completions.create(model="some-model", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == f"Hello from {openai_like.kind}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "some-model"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        11,
        7,
        18,
    )  # type: ignore[union-attr]
    [recorded] = openai_like.requests
    expected_path = "/openai/v1/chat/completions" if openai_like.kind == "groq" else "/v1/chat/completions"
    assert (recorded.method, recorded.path) == ("POST", expected_path)
    assert recorded.headers["authorization"] == f"Bearer {openai_like.api_key}"
    assert recorded.body == {"model": "some-model", "messages": MESSAGES}
    assert openai_like.count == 1


def test_openai_like_stream_with_usage(openai_like: FakeProvider) -> None:
    openai_like.push(Reply("one two three", completion_tokens=3))
    with sdk(openai_like) as client:
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},  # type: ignore[arg-type]
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].delta.content for c in chunks[1:4]] == ["one", " two", " three"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_stream_without_usage_and_tool_calls(openai_fake: FakeProvider, http: httpx.Client) -> None:
    openai_fake.push(Reply(tool_calls=[TOOL_CALL]))
    response = http.post(
        f"{openai_fake.base_url}/chat/completions",
        json={"model": "m", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {openai_fake.api_key}"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all("usage" not in c for c in chunks)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"Paris"}'
    assert len(calls) == 3
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_like_fail_renders_envelope(openai_like: FakeProvider) -> None:
    openai_like.push(Fail(500), Fail(429, headers={"retry-after": "2"}))
    with sdk(openai_like) as client:
        with pytest.raises(openai.InternalServerError) as server_error:
            client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as rate_limited:
            client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content  # type: ignore[arg-type]
    assert server_error.value.status_code == 500
    assert server_error.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert rate_limited.value.code == "rate_limit_exceeded"
    assert rate_limited.value.response.headers["retry-after"] == "2"


def test_openai_like_drop_is_a_connection_error(openai_like: FakeProvider) -> None:
    openai_like.push(Drop())
    with sdk(openai_like) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert openai_like.count == 1


def test_openai_wrong_key_is_rejected_without_consuming(openai_fake: FakeProvider) -> None:
    openai_fake.push(Reply("scripted"))
    with sdk(openai_fake, api_key="wrong-key-123") as client:
        with pytest.raises(openai.AuthenticationError) as rejected:
            client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        assert rejected.value.code == "invalid_api_key"
    with sdk(openai_fake) as client:
        with pytest.raises(openai.BadRequestError, match="only allowed when 'stream' is enabled"):
            client.chat.completions.create(model="m", messages=MESSAGES, stream_options={"include_usage": True})  # type: ignore[arg-type]
        assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "scripted"  # type: ignore[arg-type]
        assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]
    assert openai_fake.count == 3


def test_openai_stream_error_and_mid_stream_drop(openai_fake: FakeProvider) -> None:
    openai_fake.push(StreamError(after_chunks=1), FailMidStream(after_chunks=2))
    with sdk(openai_fake) as client:
        received: list[str] = []
        with pytest.raises(openai.APIError, match="server had an error"):
            for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                received.append(chunk.choices[0].delta.content or "")
        assert received == ["", "Hello"]
        received.clear()
        with pytest.raises(openai.APIConnectionError) as dropped:
            for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                received.append(chunk.choices[0].delta.content or "")
        assert received == ["", "Hello", " from"]
    assert type(dropped.value.__cause__).__name__ == "RemoteProtocolError"  # the SDK may vendor its own httpx


def test_delay_stall_raw_and_reset(openai_fake: FakeProvider, http: httpx.Client) -> None:
    url, headers = f"{openai_fake.base_url}/chat/completions", {"Authorization": f"Bearer {openai_fake.api_key}"}
    openai_fake.push(Delay(0.15), Stall(1, 0.15), Raw(200, b"{not json", "text/html"))
    started = time.monotonic()
    assert http.post(url, json={"model": "m", "messages": MESSAGES}, headers=headers).status_code == 200
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    with http.stream("POST", url, json={"model": "m", "messages": MESSAGES, "stream": True}, headers=headers) as r:
        text = r.read().decode()
    assert time.monotonic() - started >= 0.15
    assert text.endswith("data: [DONE]\n\n")
    raw = http.post(url, json={"model": "m", "messages": MESSAGES}, headers=headers)
    assert (raw.content, raw.headers["content-type"]) == (b"{not json", "text/html")
    openai_fake.set_default(Fail(503))
    openai_fake.reset()
    assert (openai_fake.requests, openai_fake.count) == ([], 0)
    assert http.post(url, json={"model": "m", "messages": MESSAGES}, headers=headers).status_code == 200


# -- OpenAI and Groq embeddings through the official SDK ------------------------------------------

TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]


def test_fake_embedding_is_deterministic_float32_and_unit_length() -> None:
    vector = fake_embedding("hello")
    assert len(vector) == EMBEDDING_DIMENSIONS == 1536
    assert vector == fake_embedding("hello") != fake_embedding("hello!")
    assert fake_embedding([1, 2]) != fake_embedding("[1,2]")  # a token array never collides with a string
    assert fake_embedding("hello", 8) != vector[:8]
    assert all(-1 <= v <= 1 and struct.unpack("<f", struct.pack("<f", v))[0] == v for v in vector)
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)


def test_openai_like_embeddings_float_in_order(openai_like: FakeProvider) -> None:
    with sdk(openai_like) as client:
        answer = client.embeddings.create(model="text-embedding-3-small", input=TEXTS, encoding_format="float")
    assert answer.object == "list" and answer.model == "text-embedding-3-small"
    assert [(e.object, e.index) for e in answer.data] == [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    assert [e.embedding for e in answer.data] == [fake_embedding(t) for t in TEXTS]
    tokens = sum(len(t) // 4 + 1 for t in TEXTS)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (tokens, tokens)
    [recorded] = openai_like.embeddings_requests
    assert recorded.path == openai_like.base_url.removeprefix(f"http://127.0.0.1:{openai_like.port}") + "/embeddings"
    assert recorded.body == {"model": "text-embedding-3-small", "input": TEXTS, "encoding_format": "float"}
    assert (openai_like.count, openai_like.chat_requests) == (0, [])  # not a chat request


def test_openai_embeddings_base64_is_the_sdk_default(openai_fake: FakeProvider, http: httpx.Client) -> None:
    with sdk(openai_fake) as client:
        decoded = client.embeddings.create(model="text-embedding-3-small", input="hello")
        raw = client.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="base64")
    assert openai_fake.embeddings_requests[0].body["encoding_format"] == "base64"  # sent though not asked for
    assert decoded.data[0].embedding == fake_embedding("hello")  # the SDK decoded the float32 array
    assert raw.data[0].embedding == embedding_base64(fake_embedding("hello"))  # asked for: left as the string
    assert base64.b64decode(raw.data[0].embedding) == struct.pack("<1536f", *fake_embedding("hello"))
    url, headers = f"{openai_fake.base_url}/embeddings", {"Authorization": f"Bearer {openai_fake.api_key}"}
    plain = http.post(url, json={"model": "text-embedding-3-small", "input": "hello"}, headers=headers).json()
    assert plain["data"][0]["embedding"] == fake_embedding("hello")  # the API's own default is float
    assert plain["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_openai_embeddings_dimensions_and_token_arrays(openai_fake: FakeProvider) -> None:
    with sdk(openai_fake) as client:
        short = client.embeddings.create(model="text-embedding-3-large", input=["a", "b"], dimensions=256)
        one = client.embeddings.create(model="text-embedding-3-small", input=[1, 2, 3], encoding_format="float")
        many = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert [e.embedding for e in short.data] == [fake_embedding("a", 256), fake_embedding("b", 256)]
    assert [e.embedding for e in one.data] == [fake_embedding([1, 2, 3])]
    assert (one.usage.prompt_tokens, many.usage.prompt_tokens) == (3, 5)
    assert [e.embedding for e in many.data] == [fake_embedding([1, 2, 3]), fake_embedding([4, 5])]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "x"}, "you must provide a model parameter"),
        ({"model": "m"}, "Missing required parameter: 'input'."),
        ({"model": "m", "input": []}, "'$.input' is invalid."),
        ({"model": "m", "input": ""}, "'$.input' is invalid."),
        ({"model": "m", "input": ["a", 1]}, "'$.input' is invalid."),
        ({"model": "m", "input": ["a"] * 2049}, "'$.input' is invalid."),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "Invalid value: 'int8'."),
        ({"model": "m", "input": "x", "dimensions": 0}, "Invalid value for 'dimensions' = 0."),
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}, "This model does not support"),
    ],
)
def test_openai_embeddings_rejects_like_the_real_api(
    openai_fake: FakeProvider, http: httpx.Client, body: dict[str, Any], message: str
) -> None:
    openai_fake.push(Fail(500))
    url, headers = f"{openai_fake.base_url}/embeddings", {"Authorization": f"Bearer {openai_fake.api_key}"}
    refused = http.post(url, json=body, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith(message)
    assert http.post(url, json={"model": "m", "input": "x"}, headers=headers).status_code == 500  # not consumed
    wrong_key = http.post(url, json={"model": "m", "input": "x"}, headers={"Authorization": "Bearer nope"})
    assert (wrong_key.status_code, wrong_key.json()["error"]["code"]) == (401, "invalid_api_key")


def test_embeddings_share_the_behaviour_queue_with_chat(openai_fake: FakeProvider, http: httpx.Client) -> None:
    openai_fake.push(Fail(429), Reply("chat"), Delay(0.15), Drop(), FailMidStream(0), Raw(200, b"{}"))
    with sdk(openai_fake) as client:
        with pytest.raises(openai.RateLimitError):
            client.embeddings.create(model="text-embedding-3-small", input="x")
        assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "chat"  # type: ignore[arg-type]
        started = time.monotonic()
        assert client.embeddings.create(model="text-embedding-3-small", input="x").data[0].embedding
        assert time.monotonic() - started >= 0.15
        with pytest.raises(openai.APIConnectionError):
            client.embeddings.create(model="text-embedding-3-small", input="x")
    url, headers = f"{openai_fake.base_url}/embeddings", {"Authorization": f"Bearer {openai_fake.api_key}"}
    with pytest.raises(httpx.RemoteProtocolError):  # half of the JSON list, then a reset
        http.post(url, json={"model": "m", "input": "x"}, headers=headers)
    assert http.post(url, json={"model": "m", "input": "x"}, headers=headers).content == b"{}"
    assert (len(openai_fake.embeddings_requests), openai_fake.count) == (5, 1)


def test_anthropic_has_no_embeddings(anthropic_fake: FakeProvider, http: httpx.Client) -> None:
    response = http.post(
        f"{anthropic_fake.base_url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "x"},
        headers=anthropic_headers(anthropic_fake),
    )
    assert response.status_code == 404
    body = response.json()
    assert (body["type"], body["error"]) == ("error", {"type": "not_found_error", "message": "Not Found"})
    assert [r.path for r in anthropic_fake.embeddings_requests] == ["/v1/embeddings"]


# -- Anthropic through raw httpx ------------------------------------------------------------------


@pytest.fixture
def anthropic_client(anthropic_fake: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=anthropic_fake.base_url, headers=anthropic_headers(anthropic_fake), timeout=5, verify=False
    ) as client:
        yield client


def test_anthropic_message(anthropic_fake: FakeProvider, anthropic_client: httpx.Client) -> None:
    anthropic_fake.push(Reply("Let me check.", tool_calls=[TOOL_CALL], prompt_tokens=20, completion_tokens=9))
    response = anthropic_client.post("/v1/messages", json=anthropic_body())
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("msg_")
    assert "request-id" in response.headers
    body.pop("id")
    assert body == {
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-latest",
        "stop_sequence": None,
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 9,
        },
    }
    assert anthropic_client.post("/v1/messages", json=anthropic_body()).json()["content"] == [
        {"type": "text", "text": "Hello from anthropic"}
    ]
    assert anthropic_fake.requests[0].headers["anthropic-version"] == "2023-06-01"


def test_anthropic_stream_event_sequence(anthropic_fake: FakeProvider, anthropic_client: httpx.Client) -> None:
    anthropic_fake.push(Reply("Hi there", tool_calls=[TOOL_CALL], completion_tokens=5))
    response = anthropic_client.post("/v1/messages", json=anthropic_body(stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
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
    data = [json.loads(d) for _, d in events]
    assert all(name == d["type"] for (name, _), d in zip(events, data, strict=True))
    assert data[0]["message"]["usage"]["input_tokens"] == 11
    assert [d["delta"]["text"] for d in data[3:5]] == ["Hi", " there"]
    assert data[6]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert "".join(d["delta"]["partial_json"] for d in data[7:9]) == '{"city":"Paris"}'
    assert data[10]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert data[10]["usage"] == {"output_tokens": 5}


def test_anthropic_errors(anthropic_fake: FakeProvider, anthropic_client: httpx.Client) -> None:
    anthropic_fake.push(Fail(529), StreamError(after_chunks=1))
    overloaded = anthropic_client.post("/v1/messages", json=anthropic_body())
    assert overloaded.status_code == 529
    assert overloaded.json()["type"] == "error"
    assert overloaded.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    events = sse_events(anthropic_client.post("/v1/messages", json=anthropic_body(stream=True)).text)
    assert [name for name, _ in events][-2:] == ["content_block_delta", "error"]
    assert json.loads(events[-1][1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"model": "c", "messages": MESSAGES}, {}, 400, "max_tokens: Field required"),
        (
            {"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}, *MESSAGES]},
            {},
            400,
            'messages: Unexpected role "system".',
        ),
        ({**anthropic_body(), "stream_options": {}}, {}, 400, "stream_options: Extra inputs are not permitted"),
        (anthropic_body(), {"anthropic-version": ""}, 400, "anthropic-version: header is required"),
        (anthropic_body(), {"x-api-key": "wrong"}, 401, "invalid x-api-key"),
    ],
)
def test_anthropic_rejects_like_the_real_api(
    anthropic_fake: FakeProvider,
    anthropic_client: httpx.Client,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    anthropic_fake.push(Reply("scripted"))
    response = anthropic_client.post("/v1/messages", json=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == ("authentication_error" if status == 401 else "invalid_request_error")
    assert error["message"].startswith(message)
    assert anthropic_client.post("/v1/messages", json=anthropic_body()).json()["content"][0]["text"] == "scripted"
    assert anthropic_fake.count == 2


# -- Anthropic through the official SDK: thinking, cache usage, count_tokens -----------------------


@pytest.fixture
def anthropic_sdk(anthropic_fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=anthropic_fake.base_url,
        api_key=anthropic_fake.api_key,
        max_retries=0,
        timeout=5,
        http_client=anthropic.DefaultHttpxClient(verify=False),
    ) as client:
        yield client


THINKING = {"type": "enabled", "budget_tokens": 1024}


def blocks(content: list[Any]) -> list[dict[str, Any]]:
    """Content blocks as plain dicts (the stream's final message types its text blocks as parsed ones)."""
    return [{k: v for k, v in block.model_dump().items() if k != "parsed_output"} for block in content]


def test_anthropic_thinking_and_cache_usage(anthropic_fake: FakeProvider, anthropic_sdk: anthropic.Anthropic) -> None:
    reply = Reply("Paris.", thinking="The capital of France.", cache_creation_tokens=30, cache_read_tokens=40)
    anthropic_fake.push(reply)
    message = anthropic_sdk.messages.create(
        model="claude-sonnet-4-20250514", max_tokens=2048, messages=MESSAGES, thinking=THINKING
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == ("The capital of France.", thinking_signature(thinking.thinking))
    usage = message.usage
    assert (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (11, 30, 40)

    anthropic_fake.push(reply)
    with anthropic_sdk.messages.stream(
        model="claude-sonnet-4-20250514", max_tokens=2048, messages=MESSAGES, thinking=THINKING
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert blocks(final.content) == blocks(message.content)
    deltas = [event.delta.type for event in events if event.type == "content_block_delta"]
    assert deltas == ["thinking_delta"] * 4 + ["signature_delta", "text_delta"]
    thinking_deltas = ["content_block_delta", "thinking"] * 4
    assert [event.type for event in events] == [  # the SDK reads ping and shows it not
        "message_start",
        "content_block_start",
        *thinking_deltas,
        "content_block_delta",
        "signature",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "text",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert final.usage.cache_read_input_tokens == 40


def test_anthropic_count_tokens(anthropic_fake: FakeProvider, anthropic_sdk: anthropic.Anthropic) -> None:
    counted = anthropic_sdk.messages.count_tokens(
        model="claude-sonnet-4-20250514", messages=MESSAGES, system="Be brief.", thinking=THINKING
    )
    body = {"messages": MESSAGES, "system": "Be brief.", "thinking": THINKING}
    assert counted.input_tokens == count_tokens(body) == len(json.dumps(body, separators=(",", ":"))) // 4
    assert [r.path for r in anthropic_fake.count_tokens_requests] == ["/v1/messages/count_tokens"]
    assert anthropic_fake.count == 0  # not a chat request

    anthropic_fake.push_count_tokens(Fail(529))
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_sdk.messages.count_tokens(model="claude-sonnet-4-20250514", messages=MESSAGES)
    assert caught.value.status_code == 529
    with pytest.raises(anthropic.BadRequestError) as refused:  # a field only creation takes, as the real API
        anthropic_sdk.messages.count_tokens(
            model="claude-sonnet-4-20250514", messages=MESSAGES, extra_body={"max_tokens": 16}
        )
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Extra inputs are not permitted"},
        "request_id": refused.value.body["request_id"],  # type: ignore[index]
    }

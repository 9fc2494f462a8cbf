"""Properties of the Messages wire: a stored message replayed as events and assembled again is the same
message, every replayed event is one of Anthropic's; any body ends in a ``MessagesRequest`` or an
``InvalidRequest``, and a body the check accepts never makes the prompt estimate fail."""

from __future__ import annotations

import string
from typing import Any

import orjson
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.anthropic import parse_count_tokens_request, parse_messages_request
from llm_gateway.schemas.anthropic_stream import MessageAssembly, message_to_events
from llm_gateway.schemas.anthropic_tokens import estimate_messages_tokens
from llm_gateway.schemas.sse_frames import split_frame
from tests.strategies import (
    ANY_JSON,
    IGNORE_RANDOM_FROM_OTHER_THREADS,
    JSON_VALUES,
    PROPERTY_SETTINGS,
    json_paths,
    replaced,
)

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)

texts = st.text(max_size=30)
names = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
tool_inputs = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3)
counts = st.integers(0, 10**6)

text_blocks = st.builds(lambda text: {"type": "text", "text": text}, texts)
tool_use_blocks = st.builds(
    lambda id_, name, input_: {"type": "tool_use", "id": "toolu_" + id_, "name": name, "input": input_},
    names, names, tool_inputs,
)  # fmt: skip
thinking_blocks = st.builds(lambda thinking, signature: {"type": "thinking", "thinking": thinking,
                                                         "signature": signature}, texts, texts)  # fmt: skip
redacted_blocks = st.builds(lambda data: {"type": "redacted_thinking", "data": data}, names)
usages = st.fixed_dictionaries(
    {"input_tokens": counts, "output_tokens": counts},
    optional={"cache_creation_input_tokens": st.none() | counts, "cache_read_input_tokens": st.none() | counts},
)
messages = st.fixed_dictionaries(
    {
        "id": names.map(lambda id_: "msg_" + id_),
        "type": st.just("message"),
        "role": st.just("assistant"),
        "model": names,
        "content": st.lists(text_blocks | tool_use_blocks | thinking_blocks | redacted_blocks, max_size=6),
        "stop_reason": st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn"]),
        "stop_sequence": st.none() | texts,
        "usage": usages,
    }
)


@PROPERTY_SETTINGS
@given(messages)
def test_a_replayed_message_assembles_back(message: dict[str, Any]) -> None:
    assembly = MessageAssembly()
    for framed in message_to_events(message):
        event, data = split_frame(framed)
        assert STREAM_EVENT.validate_json(data).type == event
        assembly.feed(event, orjson.loads(data))
    assert assembly.result() == message
    Message.model_validate(message)


# --- Requests ----------------------------------------------------------------------------------------

request_blocks = st.one_of(
    text_blocks,
    tool_use_blocks,
    thinking_blocks,
    st.builds(lambda data: {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
              names),
    st.builds(lambda id_, content: {"type": "tool_result", "tool_use_id": id_, "content": content},
              names, texts | st.lists(text_blocks, max_size=2)),
    st.builds(lambda data: {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": data}},
              texts),
)  # fmt: skip
request_messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]), "content": texts | st.lists(request_blocks, max_size=4)}
)
tools = st.one_of(
    st.builds(lambda name, description: {"name": name, "description": description,
                                         "input_schema": {"type": "object", "properties": {}}}, names, texts),
    st.just({"type": "web_search_20250305", "name": "web_search", "max_uses": 2}),
)  # fmt: skip
requests = st.fixed_dictionaries(
    {
        "model": names,
        "max_tokens": st.integers(1, 64000),
        "messages": st.lists(request_messages, min_size=1, max_size=4),
    },
    optional={
        "system": texts | st.lists(text_blocks, max_size=2),
        "stream": st.booleans(),
        "tools": st.lists(tools, max_size=3),
        "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "f"}]),
        "stop_sequences": st.lists(texts, max_size=3),
        "temperature": st.floats(0, 1),
        "top_k": st.integers(0, 500),
        "metadata": st.fixed_dictionaries({"user_id": st.none() | texts}),
        "thinking": st.sampled_from([{"type": "enabled", "budget_tokens": 2048}, {"type": "disabled"}]),
    },
)
# The fields and block keys the check reads, where arbitrary JSON is put.
READ_KEYS = ("model", "max_tokens", "messages", "system", "stream", "tools", "tool_choice", "stop_sequences",
             "temperature", "top_p", "top_k", "metadata", "thinking", "role", "content", "type", "text", "source",
             "id", "name", "input", "tool_use_id", "input_schema", "user_id", "budget_tokens", "data")  # fmt: skip


@st.composite
def corrupted_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Messages body with one to three places set to arbitrary JSON (a value there, or a key read)."""
    body = draw(requests)
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(body)
        if draw(st.booleans()):
            path = draw(st.sampled_from(paths[1:]))
        else:
            objects = [p for p in paths if isinstance(_at(body, p), dict)]
            path = (*draw(st.sampled_from(objects)), draw(st.sampled_from(READ_KEYS)))
        body = replaced(body, path, draw(ANY_JSON))
    return body


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@PROPERTY_SETTINGS
@given(requests)
def test_valid_requests_are_accepted_and_estimated(body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    request = parse_messages_request(raw)
    assert request.body == body and request.max_tokens == body["max_tokens"]
    assert parse_count_tokens_request(raw) == body
    assert estimate_messages_tokens(body, body["model"]) > 0


@PROPERTY_SETTINGS
@given(corrupted_requests())
def test_any_body_is_accepted_or_refused_and_accepted_ones_estimate(body: dict[str, Any]) -> None:
    try:
        request = parse_messages_request(orjson.dumps(body))
    except InvalidRequest:
        return
    assert estimate_messages_tokens(request.body, request.model) > 0

"""Properties of the OpenAI -> Anthropic request translation, over generated requests.

Any valid OpenAI request either translates to a valid Messages API request or is refused with
``InvalidRequest`` (never another exception); a valid dialogue is never refused and keeps every tool
call paired with its result; arbitrary JSON the gateway's parser lets through is refused cleanly.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.errors import InvalidRequest
from llm_gateway.providers.anthropic.translate import from_anthropic_response, to_anthropic_request
from llm_gateway.providers.anthropic.wire import IMAGE_MEDIA_TYPES
from llm_gateway.schemas.openai import parse_chat_request
from tests.strategies import IGNORE_RANDOM_FROM_OTHER_THREADS, JSON_VALUES, PROPERTY_SETTINGS, chat_requests

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

MODEL = "claude-3-5-haiku-latest"
TOP_LEVEL = {
    "model", "max_tokens", "messages", "system", "temperature", "top_p", "stop_sequences", "metadata", "tools",
    "tool_choice", "stream",
}  # fmt: skip


def translate(body: dict[str, Any]) -> dict[str, Any] | None:
    """The translation, or None when it refused the request with InvalidRequest (any other error fails)."""
    try:
        return to_anthropic_request(body, MODEL, default_max_tokens=1024)
    except InvalidRequest as exc:
        assert exc.status_code == 400 and exc.message
        return None


def check_text_block(block: Any) -> None:
    assert isinstance(block, dict) and block["type"] == "text", block
    assert set(block) <= {"type", "text", "cache_control"}, block
    # Anthropic: "text content blocks must contain non-whitespace text"
    assert isinstance(block["text"], str) and block["text"].strip(), block


def check_block(block: Any, role: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        check_text_block(block)
    elif kind == "image":
        assert role == "user" and set(block) == {"type", "source"}, block
        source = block["source"]
        if source["type"] == "base64":
            assert set(source) == {"type", "media_type", "data"} and source["data"], source
            assert source["media_type"] in IMAGE_MEDIA_TYPES, source
        else:
            assert source == {"type": "url", "url": source["url"]} and source["url"].startswith("http"), source
    elif kind == "tool_use":
        assert role == "assistant" and set(block) == {"type", "id", "name", "input"}, block
        assert isinstance(block["id"], str) and block["id"] and isinstance(block["name"], str) and block["name"]
        assert isinstance(block["input"], dict), block
    elif kind == "tool_result":
        assert role == "user" and set(block) <= {"type", "tool_use_id", "content"}, block
        assert isinstance(block["tool_use_id"], str) and block["tool_use_id"], block
        content = block.get("content")
        if isinstance(content, str):
            assert content.strip(), block
        elif content is not None:
            assert isinstance(content, list) and content, block
            for part in content:
                check_text_block(part)
    else:
        raise AssertionError(f"unexpected block {block!r}")


def check_messages(messages: Any) -> None:
    assert isinstance(messages, list) and messages
    for i, message in enumerate(messages):
        assert set(message) == {"role", "content"}, message
        assert message["role"] in ("user", "assistant"), message
        if i:
            assert message["role"] != messages[i - 1]["role"], "roles must alternate"
        assert isinstance(message["content"], list) and message["content"], message
        for block in message["content"]:
            check_block(block, message["role"])


def check_tools(request: dict[str, Any]) -> None:
    tools = request.get("tools")
    choice = request.get("tool_choice")
    if tools is None:
        assert choice is None, "tool_choice without tools"
        return
    assert isinstance(tools, list) and tools
    names = [tool["name"] for tool in tools]
    assert len(names) == len(set(names)), "tool names must be unique"
    for tool in tools:
        assert set(tool) <= {"name", "input_schema", "description"} and tool["name"], tool
        assert isinstance(tool["input_schema"], dict) and tool["input_schema"].get("type") == "object", tool
    if choice is not None:
        assert choice["type"] in ("auto", "any", "tool", "none"), choice
        assert set(choice) <= {"type", "name", "disable_parallel_tool_use"}, choice
        assert (choice["type"] == "tool") == ("name" in choice), choice
        if choice["type"] == "tool":
            assert choice["name"] in names, choice


def check_valid_messages_request(request: dict[str, Any]) -> None:
    """The Messages API's own rules for a request body (those the gateway can break)."""
    assert set(request) <= TOP_LEVEL, set(request) - TOP_LEVEL
    assert request["model"] == MODEL
    max_tokens = request["max_tokens"]
    assert type(max_tokens) is int and max_tokens >= 1
    check_messages(request["messages"])
    system = request.get("system")
    if isinstance(system, str):
        assert system.strip()
    elif system is not None:
        assert isinstance(system, list) and system
        for block in system:
            check_text_block(block)
    assert not ("temperature" in request and "top_p" in request), "temperature and top_p together"
    assert 0 <= request.get("temperature", 0) <= 1 and 0 <= request.get("top_p", 0) <= 1
    stop = request.get("stop_sequences")
    assert stop is None or (isinstance(stop, list) and stop and all(isinstance(s, str) and s for s in stop))
    metadata = request.get("metadata")
    assert metadata is None or (set(metadata) == {"user_id"} and isinstance(metadata["user_id"], str))
    assert request.get("stream", True) is True
    check_tools(request)
    orjson.dumps(request)


def check_tool_pairing(request: dict[str, Any]) -> None:
    """Each tool_use is answered in the very next (user) message, whose content starts with the results."""
    messages = request["messages"]
    for i, message in enumerate(messages):
        uses = [block["id"] for block in message["content"] if block["type"] == "tool_use"]
        results = [block["tool_use_id"] for block in message["content"] if block["type"] == "tool_result"]
        if results:
            assert i > 0, "a tool_result with no tool_use before it"
            before = {block.get("id") for block in messages[i - 1]["content"] if block["type"] == "tool_use"}
            assert set(results) == before, (results, before)
            kinds = [block["type"] for block in message["content"]]
            assert kinds[: len(results)] == ["tool_result"] * len(results), "tool results must come first"
        if uses:
            assert i + 1 < len(messages), "a tool_use with no tool_result after it"


def has_substance(body: dict[str, Any]) -> bool:
    """Whether a dialogue has anything Anthropic can take as a turn (whitespace-only text is dropped)."""

    def text(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(part.get("text") or part.get("refusal") or "" for part in content or [] if "url" not in part)

    for message in body["messages"]:
        if message["role"] in ("tool",) or message.get("tool_calls"):
            return True
        if message["role"] in ("user", "assistant"):
            content = message["content"]
            if text(content).strip() or (isinstance(content, list) and any(p["type"] == "image_url" for p in content)):
                return True
    return False


@PROPERTY_SETTINGS
@given(chat_requests())
def test_any_valid_openai_request_translates_to_a_valid_messages_request_or_is_refused(body: dict[str, Any]) -> None:
    snapshot = orjson.dumps(body)
    request = translate(body)
    assert orjson.dumps(body) == snapshot, "the caller's request must not be modified"
    if request is not None:
        check_valid_messages_request(request)
        assert request.get("stream", False) == bool(body.get("stream"))


@PROPERTY_SETTINGS
@given(chat_requests(dialogue=True))
def test_a_valid_dialogue_is_never_refused_and_keeps_tool_calls_paired(body: dict[str, Any]) -> None:
    request = translate(body)
    if request is None:
        assert not has_substance(body), "a valid dialogue was refused"
        return
    check_valid_messages_request(request)
    check_tool_pairing(request)
    wanted = body.get("max_completion_tokens", body.get("max_tokens", 1024))
    assert request["max_tokens"] == wanted


ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", ""])
loose_messages = st.lists(
    st.dictionaries(
        st.sampled_from(["content", "tool_calls", "tool_call_id", "name", "refusal"]), JSON_VALUES, max_size=3
    ).flatmap(lambda message: ROLES.map(lambda role: {**message, "role": role})),
    min_size=1,
    max_size=4,
)
loose_fields = st.dictionaries(
    st.sampled_from(
        [
            *("tools", "tool_choice", "response_format", "stop", "temperature", "top_p", "n", "user"),
            *("logprobs", "parallel_tool_calls", "functions", "stream"),
        ]
    ),
    JSON_VALUES,
    max_size=4,
)


@PROPERTY_SETTINGS
@given(loose_messages, loose_fields)
def test_whatever_the_parser_admits_is_translated_or_refused_cleanly(messages: Any, fields: dict[str, Any]) -> None:
    raw = orjson.dumps({"model": "claude-3-5-haiku-latest", "messages": messages, **fields})
    try:
        chat = parse_chat_request(raw)
    except InvalidRequest:
        return
    request = translate(chat.body)
    if request is not None:
        orjson.dumps(request)


@PROPERTY_SETTINGS
@given(st.dictionaries(st.sampled_from(["id", "content", "stop_reason", "usage", "model", "type"]), JSON_VALUES))
def test_any_messages_response_reads_as_a_chat_completion(response: dict[str, Any]) -> None:
    completion = from_anthropic_response(response, model="gpt-4o-mini", created=1)
    assert completion["object"] == "chat.completion" and completion["id"].startswith("chatcmpl-")
    choice = completion["choices"][0]
    assert choice["finish_reason"] in ("stop", "length", "tool_calls", "content_filter")
    assert set(completion["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    orjson.dumps(completion)

"""Properties of the OpenAI -> Anthropic request translation, over generated requests.

Any valid OpenAI request either translates to a valid Messages API request or is refused with
``InvalidRequest`` (never another exception); a valid dialogue is never refused and keeps every tool
call paired with its result; arbitrary JSON the gateway's parser lets through is refused cleanly;
every parameter the caller set is either honoured by the request or listed by ``dropped_params``
(never both), by the table of how each parameter maps (``HONOURED``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.errors import InvalidRequest
from llm_gateway.providers.anthropic.translate import dropped_params, from_anthropic_response, to_anthropic_request
from llm_gateway.providers.anthropic.wire import IMAGE_MEDIA_TYPES, JSON_TOOL_NAME
from llm_gateway.schemas.openai import parse_chat_request
from tests.strategies import (
    IGNORE_RANDOM_FROM_OTHER_THREADS,
    JSON_VALUES,
    PROPERTY_SETTINGS,
    chat_requests,
    identifiers,
    texts,
)

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

MODEL = "claude-3-5-haiku-latest"
TOP_LEVEL = {
    "model", "max_tokens", "messages", "system", "temperature", "top_p", "stop_sequences", "metadata", "tools",
    "tool_choice", "stream", "thinking", "output_config", "service_tier",
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
    check_thinking(request)
    assert request.get("service_tier", "standard_only") == "standard_only"
    orjson.dumps(request)


def check_thinking(request: dict[str, Any]) -> None:
    """Extended thinking's own rules (platform.claude.com/docs/en/build-with-claude/extended-thinking)."""
    thinking = request.get("thinking")
    if thinking is None:
        assert "output_config" not in request
        return
    if thinking["type"] == "enabled":
        assert set(thinking) == {"type", "budget_tokens"}
        assert 1024 <= thinking["budget_tokens"] < request["max_tokens"]
        assert request["max_tokens"] - thinking["budget_tokens"] >= 1024, "room left for the answer"
    else:
        assert thinking == {"type": "adaptive", "display": "summarized"}
        assert request["output_config"]["effort"] in ("low", "medium", "high", "xhigh", "max")
    assert "temperature" not in request and "top_k" not in request
    assert 0.95 <= request.get("top_p", 1) <= 1
    assert request.get("tool_choice", {"type": "auto"})["type"] in ("auto", "none"), "no forced tool"
    assert request["messages"][-1]["role"] == "user", "no prefill"
    last_assistant = next((m for m in reversed(request["messages"]) if m["role"] == "assistant"), None)
    assert last_assistant is None or all(block["type"] != "tool_use" for block in last_assistant["content"])


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
        assert request["model"] == MODEL
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


# ------------------------------------------------------------- honoured or listed, never silent

Check = Callable[[dict[str, Any], dict[str, Any]], bool]


def _always(body: dict[str, Any], request: dict[str, Any]) -> bool:
    return True


def _never(body: dict[str, Any], request: dict[str, Any]) -> bool:
    return False


def _no_op(name: str, value: Any) -> Check:
    return lambda body, request: body[name] == value


def _stop(body: dict[str, Any], request: dict[str, Any]) -> bool:
    stop = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
    return request.get("stop_sequences", []) == [s for s in stop if s]


def _caller_tools(request: dict[str, Any]) -> list[str]:
    return [tool["name"] for tool in request.get("tools", []) if tool["name"] != JSON_TOOL_NAME]


def _tool_choice(body: dict[str, Any], request: dict[str, Any]) -> bool:
    choice, sent = body["tool_choice"], request.get("tool_choice", {"type": "auto"})
    json_forced = sent == {"type": "tool", "name": JSON_TOOL_NAME}
    if not body.get("tools"):
        return True  # no tools: nothing to choose (OpenAI refuses this; the translation ignores it)
    if choice == "required":
        return sent["type"] == "any"
    if choice == "none":
        return sent["type"] == "none" or json_forced
    if choice == "auto":  # with a JSON answer the model must call a tool: one of the caller's, or the JSON one
        return sent["type"] == "auto" or (sent["type"] == "any" and JSON_TOOL_NAME in str(request["tools"]))
    return sent == {"type": "tool", "name": choice["function"]["name"], **sent}


def _parallel(body: dict[str, Any], request: dict[str, Any]) -> bool:
    sent = request.get("tool_choice", {})
    if not _caller_tools(request) or sent.get("type") == "none":
        return True
    return sent.get("disable_parallel_tool_use", False) is not body["parallel_tool_calls"]


def _response_format(body: dict[str, Any], request: dict[str, Any]) -> bool:
    has_json_tool = JSON_TOOL_NAME in [tool["name"] for tool in request.get("tools", [])]
    return has_json_tool == (body["response_format"]["type"] != "text")


def _user(body: dict[str, Any], request: dict[str, Any]) -> bool:
    return bool(request.get("metadata") == {"user_id": body["user"]})


# How each OpenAI Chat Completions parameter maps: honoured(body, request) says whether the
# request carries it. Names not in the table (OpenAI's or anyone's) are never carried.
HONOURED: dict[str, Check] = {
    "model": _always,  # replaced by the deployment's model
    "messages": _always,  # their translation has its own properties above
    "max_completion_tokens": lambda b, r: r["max_tokens"] == b["max_completion_tokens"],
    "max_tokens": lambda b, r: r["max_tokens"] == b.get("max_completion_tokens", b["max_tokens"]),
    "stream": lambda b, r: r.get("stream", False) == b["stream"],
    "stream_options": _always,  # include_usage: the stream translator's job
    "temperature": lambda b, r: r.get("temperature", 1) == b["temperature"],  # Anthropic's default is 1
    "top_p": lambda b, r: r.get("top_p", 1) == b["top_p"],
    "stop": _stop,
    "user": _user,
    "safety_identifier": lambda b, r: r.get("metadata") == {"user_id": b["safety_identifier"]},
    "tools": lambda b, r: _caller_tools(r) == [tool["function"]["name"] for tool in b["tools"]],
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _parallel,
    "response_format": _response_format,
    "reasoning_effort": lambda b, r: ("thinking" in r) == (b["reasoning_effort"] != "none"),
    "service_tier": lambda b, r: (
        r.get("service_tier") == {"auto": None, "default": "standard_only"}.get(b["service_tier"], "unmapped")
    ),
    "n": _no_op("n", 1),
    "logprobs": _no_op("logprobs", False),
    "presence_penalty": _no_op("presence_penalty", 0),
    "frequency_penalty": _no_op("frequency_penalty", 0),
    "logit_bias": _no_op("logit_bias", {}),
    "store": _no_op("store", False),
    "metadata": _no_op("metadata", {}),
    "modalities": _no_op("modalities", ["text"]),
    **dict.fromkeys(
        ["seed", "top_logprobs", "audio", "prediction", "verbosity", "web_search_options", "prompt_cache_key"],
        _never,
    ),
}

CLAUDE_MODELS = st.sampled_from(
    ["claude-3-5-haiku-latest", "claude-3-7-sonnet-latest", "claude-sonnet-4-5-20250929", "claude-opus-4-7"]
)
# Parameters the shared strategy does not draw, and values that matter here; a request takes any subset.
EXTRA_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max", "turbo"]),
    "temperature": st.sampled_from([0, 0.3, 1, 1.0, 1.7, 2]),
    "top_p": st.sampled_from([0.5, 0.95, 0.99, 1]),
    "max_completion_tokens": st.sampled_from([1, 1024, 2047, 2048, 5000, 64000]),
    "presence_penalty": st.sampled_from([0, 0.0, 1.5]),
    "top_logprobs": st.integers(0, 20),
    "verbosity": st.sampled_from(["low", "medium", "high"]),
    "modalities": st.sampled_from([["text"], ["text", "audio"]]),
    "audio": st.just({"voice": "alloy", "format": "mp3"}),
    "prediction": texts.map(lambda text: {"type": "content", "content": text}),
    "web_search_options": st.just({}),
    "safety_identifier": identifiers,
    "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
    "prompt_cache_key": identifiers,
    "top_k": st.integers(1, 100),  # not OpenAI's: never carried either
    "seed": st.none(),  # null is absent: never listed
}


@st.composite
def requests_with_extras(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(chat_requests(dialogue=True))
    for name in draw(st.lists(st.sampled_from(sorted(EXTRA_FIELDS)), unique=True, max_size=6)):
        body[name] = draw(EXTRA_FIELDS[name])
    # Thinking depends on the effort, the cap, forced tools and how the dialogue ends (generated
    # dialogues mostly end inside a tool exchange, where it cannot start): draw those often.
    if draw(st.integers(0, 3)):
        body["reasoning_effort"] = draw(EXTRA_FIELDS["reasoning_effort"])
        body["max_completion_tokens"] = draw(EXTRA_FIELDS["max_completion_tokens"])
    if draw(st.booleans()):
        body["messages"] = draw(st.sampled_from(THINKABLE_DIALOGUES))
    return body


_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
THINKABLE_DIALOGUES = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks"},
    ],
]


@PROPERTY_SETTINGS
@given(requests_with_extras(), CLAUDE_MODELS)
def test_every_parameter_set_is_honoured_or_listed_never_both(body: dict[str, Any], model: str) -> None:
    snapshot = orjson.dumps(body)
    dropped = dropped_params(body, model, default_max_tokens=4096)
    assert orjson.dumps(body) == snapshot, "dropped_params must not modify the body"
    assert list(dropped) == sorted(set(dropped)), "sorted, no repeats"
    try:
        request = to_anthropic_request(body, model, default_max_tokens=4096)
    except InvalidRequest:
        return
    check_valid_messages_request(request)
    assert request["model"] == model
    for name, value in body.items():
        if value is None:
            assert name not in dropped, f"{name} is null, so absent"
            continue
        honoured = HONOURED.get(name, _never)(body, request)
        assert honoured != (name in dropped), f"{name}={value!r}: honoured={honoured}, dropped={dropped}"

"""Hypothesis strategies for OpenAI Chat Completions requests, shared by the property tests.

``chat_requests()`` draws requests that are valid for OpenAI's API: every message role and content
shape (text and image parts, refusals, tool calls with JSON arguments, tool results), tools and
``tool_choice``, ``response_format``, ``stop`` and the sampling fields, each within OpenAI's range.
``conversations()`` draws only message lists that are also valid as a dialogue: every assistant tool
call answered by its tool messages, right after it.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Bounded runs for CI, no example database (nothing written next to the sources), no timing flakiness.
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Hypothesis warns when the global `random` state changes while it draws an example; in this suite
# other threads (in-process gateways, exporters' retry jitter) may change it then, not our strategies.
IGNORE_RANDOM_FROM_OTHER_THREADS = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)

# Text that may be empty or only whitespace: both are legal OpenAI content.
texts = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\n\t ", "hello", "Bonjour à tous"]))
_NAME_CHARS = string.ascii_letters + string.digits + "_-"
identifiers = st.text(_NAME_CHARS, min_size=1, max_size=16)  # st.text over an alphabet: far faster than from_regex
function_names = st.builds(
    lambda first, rest: first + rest, st.sampled_from(string.ascii_letters), st.text(_NAME_CHARS, max_size=12)
).filter(lambda name: name != "json_response")


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


text_parts = st.lists(texts.map(text_part), min_size=1, max_size=3)
text_content = texts | text_parts

_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode()
image_urls = st.one_of(
    st.sampled_from(["https://example.com/cat.png", "http://127.0.0.1/dog.jpg"]),
    st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]).map(
        lambda media_type: f"data:{media_type};base64,{_PNG}"
    ),
)
image_parts = st.builds(
    lambda url, detail: {"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}},
    image_urls,
    st.sampled_from([None, "auto", "low", "high"]),
)
user_content = texts | st.lists(texts.map(text_part) | image_parts, min_size=1, max_size=4)

arguments = st.dictionaries(identifiers, JSON_VALUES, max_size=3).map(json.dumps)


def tool_call(call_id: str, name: str, args: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


tool_calls = st.lists(
    st.builds(tool_call, identifiers.map(lambda s: f"call_{s}"), function_names, arguments),
    min_size=1,
    max_size=3,
    unique_by=lambda call: call["id"],
)


def _named(message: dict[str, Any], name: str | None) -> dict[str, Any]:
    return {**message, "name": name} if name else message


names = st.none() | identifiers
system_messages = st.builds(
    lambda role, content, name: _named({"role": role, "content": content}, name),
    st.sampled_from(["system", "developer"]),
    text_content,
    names,
)
user_messages = st.builds(lambda content, name: _named({"role": "user", "content": content}, name), user_content, names)
assistant_content = st.one_of(
    st.none(),
    texts,
    st.lists(texts.map(text_part) | texts.map(lambda t: {"type": "refusal", "refusal": t}), min_size=1, max_size=3),
)


def _assistant(content: Any, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    elif content is None:
        message["content"] = ""  # OpenAI wants content or tool_calls
    return message


assistant_messages = st.builds(_assistant, assistant_content, st.none() | tool_calls)
tool_messages = st.builds(
    lambda call_id, content: {"role": "tool", "tool_call_id": call_id, "content": content},
    identifiers.map(lambda s: f"call_{s}"),
    text_content,
)

# Any order of any messages: valid in shape, not necessarily as a dialogue.
messages = st.lists(system_messages | user_messages | assistant_messages | tool_messages, min_size=1, max_size=6)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """System messages, then exchanges: a user turn, or an assistant's tool calls and their results."""
    out: list[dict[str, Any]] = draw(st.lists(system_messages, max_size=2))
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            out.append(draw(user_messages))
            continue
        calls = draw(tool_calls)
        out.append(_assistant(draw(assistant_content), calls))
        out += [
            {"role": "tool", "tool_call_id": call["id"], "content": draw(text_content)}
            for call in draw(st.permutations(calls))
        ]
    if draw(st.booleans()):
        out.append(draw(user_messages))
    return out


object_schemas = st.builds(
    lambda props, required: {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in props.items()},
        **({"required": sorted(props)[:required]} if required else {}),
    },
    st.dictionaries(identifiers, st.sampled_from(["string", "integer", "number", "boolean"]), max_size=3),
    st.integers(0, 2),
)


def _tool(name: str, description: str | None, parameters: dict[str, Any] | None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


tools = st.lists(
    st.builds(_tool, function_names, st.none() | texts, st.none() | object_schemas),
    min_size=1,
    max_size=3,
    unique_by=lambda tool: tool["function"]["name"],
)
response_formats = st.one_of(
    st.just({"type": "text"}),
    st.just({"type": "json_object"}),
    st.builds(
        lambda name, schema, description: {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, **({"description": description} if description else {})},
        },
        identifiers,
        object_schemas,
        st.none() | texts,
    ),
)
stops = texts | st.lists(texts, min_size=1, max_size=4)


@st.composite
def _tooling(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        chosen = draw(tools)
        out["tools"] = chosen
        names_ = [tool["function"]["name"] for tool in chosen]
        out["tool_choice"] = draw(
            st.sampled_from(["absent", "auto", "none", "required"])
            | st.sampled_from(names_).map(lambda name: {"type": "function", "function": {"name": name}})
        )
        if out["tool_choice"] == "absent":
            del out["tool_choice"]
        if draw(st.booleans()):
            out["parallel_tool_calls"] = draw(st.booleans())
    return out


# Optional fields and how to draw them; a request takes any subset.
OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "max_tokens": st.integers(1, 2**31 - 1),
    "max_completion_tokens": st.integers(1, 2**31 - 1),
    "n": st.just(1),
    "stop": stops,
    "stream": st.booleans(),
    "stream_options": st.builds(lambda usage: {"include_usage": usage}, st.booleans()),
    "user": texts,
    "seed": st.integers(-(2**63), 2**63 - 1),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "logit_bias": st.dictionaries(st.integers(0, 100_000).map(str), st.integers(-100, 100), max_size=2),
    "logprobs": st.just(False),
    "response_format": response_formats,
    "metadata": st.dictionaries(identifiers, texts, max_size=2),
    "store": st.booleans(),
    "service_tier": st.sampled_from(["auto", "default"]),
}


@st.composite
def chat_requests(draw: st.DrawFn, *, dialogue: bool = False) -> dict[str, Any]:
    """A valid OpenAI Chat Completions request body (``dialogue``: its messages form a valid dialogue)."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest", "anthropic/claude-sonnet-4"])),
        "messages": draw(conversations() if dialogue else messages),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(OPTIONAL_FIELDS)), unique=True, max_size=8))
    for name in chosen:
        body[name] = draw(OPTIONAL_FIELDS[name])
    body.update(draw(_tooling()))
    return body


# -- Beyond what every provider translates: shapes OpenAI accepts that the parser must let through ---------

custom_tools = st.builds(
    lambda name: {"type": "custom", "custom": {"name": name, "format": {"type": "text"}}}, function_names
)
custom_tool_calls = st.builds(
    lambda call_id, name, text: {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}},
    identifiers.map(lambda s: f"call_{s}"),
    function_names,
    texts,
)
other_parts = st.sampled_from(
    [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]
)
_TOOL_CHOICES = [
    "auto",
    {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
    {"type": "custom", "custom": {"name": "x"}},
]
OPENAI_EXTRAS: dict[str, st.SearchStrategy[Any]] = {
    "n": st.integers(1, 16),
    "stop": st.none() | texts | st.lists(texts, max_size=4),
    "logit_bias": st.dictionaries(st.integers(0, 100_000).map(str), st.floats(-100, 100), max_size=2),
    "stream_options": st.fixed_dictionaries(
        {}, optional={"include_usage": st.booleans(), "include_obfuscation": st.booleans()}
    ),
    "tool_choice": st.sampled_from(_TOOL_CHOICES),
    "functions": st.lists(
        st.builds(lambda name: {"name": name, "parameters": {"type": "object"}}, function_names), max_size=2
    ),
}


@st.composite
def openai_requests(draw: st.DrawFn) -> dict[str, Any]:
    """``chat_requests()`` widened to what only OpenAI (and compatible servers) accept: custom tools and
    tool calls, audio and file parts, several choices, and the rest of ``OPENAI_EXTRAS``."""
    body = draw(chat_requests())
    messages = body["messages"]
    for message in messages:
        if message["role"] == "user" and isinstance(message["content"], list) and draw(st.booleans()):
            message["content"].append(draw(other_parts))
        if message["role"] == "assistant" and draw(st.booleans()):
            message["tool_calls"] = [*message.get("tool_calls", []), draw(custom_tool_calls)]
    if draw(st.booleans()):
        body["tools"] = [*body.get("tools", []), draw(custom_tools)]
    for name in draw(st.lists(st.sampled_from(sorted(OPENAI_EXTRAS)), unique=True, max_size=3)):
        body[name] = draw(OPENAI_EXTRAS[name])
    return body


# -- Corrupted requests: any JSON at any place the gateway may read -----------------------------------

# What the gateway or a translation reads: top-level fields, a message's fields, and keys read deeper down
# (in content parts, tool calls, tools, options). A corruption may put any JSON at one of them.
READ_FIELDS = (
    "model",
    "messages",
    "tools",
    "functions",
    "function_call",
    "tool_choice",
    "parallel_tool_calls",
    "stop",
    "user",
    "stream",
    "stream_options",
    "n",
    "logit_bias",
    "logprobs",
    "response_format",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "modalities",
    "audio",
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call")
READ_KEYS = (
    *READ_FIELDS, *MESSAGE_FIELDS, "type", "text", "image_url", "url", "detail", "function", "arguments", "id",
    "parameters", "include_usage", "json_schema", "schema", "cache_control", "custom", "input_audio", "file",
)  # fmt: skip


def nested_lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


# Random JSON, scalars as often as containers (a number where an array belongs is the classic crash), and
# arrays nested up to 150 levels: past the parser's bound of 64, still within what ``orjson.dumps`` takes.
ANY_JSON = st.one_of(JSON_SCALARS, st.text(max_size=10), JSON_VALUES, st.integers(1, 150).map(nested_lists))


def json_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON value, as the keys and indices that lead to it (the root is ``()``)."""
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += json_paths(item, (*path, index))
    return paths


def replaced(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A copy of ``body`` with ``value`` at ``path`` (its last key may be new)."""
    copy_: dict[str, Any] = json.loads(json.dumps(body))
    parent: Any = copy_
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return copy_


@st.composite
def corrupted_requests(draw: st.DrawFn) -> dict[str, Any]:
    """An ``openai_requests()`` body with one to three places set to arbitrary JSON: a top-level field, a
    field of one of its messages, any value already there, or a key the gateway reads added to any object."""
    body = draw(openai_requests())
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(body)
        where = draw(st.sampled_from(["field", "message", "value", "key"]))
        if where == "field":
            path: tuple[str | int, ...] = (draw(st.sampled_from(READ_FIELDS)),)
        elif where == "message" and isinstance(body.get("messages"), list) and body["messages"]:
            index = draw(st.integers(0, len(body["messages"]) - 1))
            if not isinstance(body["messages"][index], dict):
                continue
            path = ("messages", index, draw(st.sampled_from(MESSAGE_FIELDS)))
        elif where == "value":
            path = draw(st.sampled_from(paths[1:]))
        else:
            objects = [path for path in paths if isinstance(_at(body, path), dict)]
            path = (*draw(st.sampled_from(objects)), draw(st.sampled_from(READ_KEYS)))
        body = replaced(body, path, draw(ANY_JSON))
    return body


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        value = value[step]
    return value

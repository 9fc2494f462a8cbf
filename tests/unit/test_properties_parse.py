"""Properties of ``parse_chat_request``, the hot path's only check of a request body.

Any bytes at all end in a ``ChatRequest`` or ``InvalidRequest`` (a 400 in OpenAI's envelope), never
another exception; every valid OpenAI request is accepted, with its streaming options read right; and a
body it accepts, whatever JSON was put in whichever field, never makes a later reader of the body fail
(the cache key, the prompt-token estimate, the Anthropic translation, which may only refuse it).
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway import tokens
from llm_gateway.cache.keys import cache_key, is_cacheable
from llm_gateway.errors import InvalidRequest
from llm_gateway.providers.anthropic.translate import to_anthropic_request
from llm_gateway.schemas.openai import parse_chat_request
from tests.strategies import (
    ANY_JSON,
    IGNORE_RANDOM_FROM_OTHER_THREADS,
    JSON_VALUES,
    PROPERTY_SETTINGS,
    chat_requests,
    corrupted_requests,
    openai_requests,
)

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

# Every top-level field the parser checks.
FIELDS = st.sampled_from(
    ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "seed",
     "top_logprobs", "temperature", "top_p", "presence_penalty", "frequency_penalty", "tools", "functions",
     "tool_choice", "stop", "user", "logit_bias", "response_format"]
)  # fmt: skip


def parse_or_refuse(raw: bytes) -> None:
    try:
        chat = parse_chat_request(raw)
    except InvalidRequest as exc:
        assert exc.status_code == 400
        envelope = orjson.loads(exc.body())
        assert set(envelope["error"]) == {"message", "type", "param", "code"}
        return
    assert isinstance(chat.body, dict) and isinstance(chat.model, str) and chat.model
    assert isinstance(chat.body["messages"], list) and chat.body["messages"]
    every_reader_takes(chat.body)


def every_reader_takes(body: dict[str, Any]) -> None:
    """What the pipeline does with an accepted body: none of it may fail, except the translation refusing it."""
    assert len(cache_key(body, group="g", scope_id="alice")) == 32
    is_cacheable(body)
    assert tokens.estimate_prompt_tokens(body, "gpt-4o-mini") > 0
    orjson.dumps(body)  # the upstream request
    try:
        to_anthropic_request(body, "claude-3-5-haiku-latest")
    except InvalidRequest as exc:
        assert exc.status_code == 400 and exc.message


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused_with_invalid_request(raw: bytes) -> None:
    parse_or_refuse(raw)


@PROPERTY_SETTINGS
@given(JSON_VALUES)
def test_any_json_value_parses_or_is_refused(value: Any) -> None:
    parse_or_refuse(orjson.dumps(value))


@PROPERTY_SETTINGS
@given(chat_requests(), st.dictionaries(FIELDS, ANY_JSON, max_size=3))
def test_a_request_with_fields_of_any_type_parses_or_is_refused(body: dict[str, Any], junk: dict[str, Any]) -> None:
    parse_or_refuse(orjson.dumps({**body, **junk}))


@PROPERTY_SETTINGS
@given(chat_requests(), st.sampled_from([b"", b" ", b"\n", b"\x00", b"}", b"\xff"]))
def test_a_valid_request_cut_or_padded_with_junk_is_refused_cleanly(body: dict[str, Any], junk: bytes) -> None:
    raw = orjson.dumps(body)
    parse_or_refuse(raw[: len(raw) // 2] + junk)
    parse_or_refuse(raw + junk)


@PROPERTY_SETTINGS
@given(chat_requests())
def test_every_valid_openai_request_is_accepted(body: dict[str, Any]) -> None:
    chat = parse_chat_request(orjson.dumps(body))
    assert chat.body == body and chat.model == body["model"]
    assert chat.stream is bool(body.get("stream"))
    assert chat.include_usage is bool((body.get("stream_options") or {}).get("include_usage"))


@PROPERTY_SETTINGS
@given(corrupted_requests())
def test_any_json_anywhere_the_gateway_reads_is_refused_or_safe_for_every_reader(body: dict[str, Any]) -> None:
    parse_or_refuse(orjson.dumps(body))


@PROPERTY_SETTINGS
@given(openai_requests())
def test_requests_only_openai_takes_are_accepted_too(body: dict[str, Any]) -> None:
    """Custom tools and tool calls, audio and file parts, several choices: valid for OpenAI, so never refused."""
    chat = parse_chat_request(orjson.dumps(body))
    assert chat.body == body
    every_reader_takes(chat.body)

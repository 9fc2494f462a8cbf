"""Properties of ``parse_chat_request``, the hot path's only check of a request body.

Any bytes at all end in a ``ChatRequest`` or ``InvalidRequest`` (a 400 in OpenAI's envelope), never
another exception; every valid OpenAI request is accepted, with its streaming options read right.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.openai import parse_chat_request
from tests.strategies import IGNORE_RANDOM_FROM_OTHER_THREADS, JSON_VALUES, PROPERTY_SETTINGS, chat_requests

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

FIELDS = st.sampled_from(
    ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "seed",
     "top_logprobs", "temperature", "top_p", "presence_penalty", "frequency_penalty"]
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


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused_with_invalid_request(raw: bytes) -> None:
    parse_or_refuse(raw)


@PROPERTY_SETTINGS
@given(JSON_VALUES)
def test_any_json_value_parses_or_is_refused(value: Any) -> None:
    parse_or_refuse(orjson.dumps(value))


@PROPERTY_SETTINGS
@given(chat_requests(), st.dictionaries(FIELDS, JSON_VALUES, max_size=3))
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

"""Cache keys: canonical over order and whitespace, blind to fields that cannot change the answer, scoped."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_gateway.cache import IGNORED_FIELDS, cache_key, is_cacheable

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
    "temperature": 0.2,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
}


def key(body: dict[str, Any], *, group: str = "gpt-4o-mini", scope_id: str | None = "alice") -> str:
    return cache_key(body, group=group, scope_id=scope_id)


def test_key_is_hex_and_stable() -> None:
    value = key(BODY)
    assert len(value) == 32 and int(value, 16) >= 0
    assert key(BODY) == value


def test_key_order_and_whitespace_do_not_matter() -> None:
    compact = orjson.dumps(BODY)
    pretty = orjson.dumps(BODY, option=orjson.OPT_INDENT_2)
    # reverse every object's key order, nested ones included
    reordered = orjson.dumps(_reverse_keys(BODY))
    assert compact != reordered
    assert key(orjson.loads(compact)) == key(orjson.loads(pretty)) == key(orjson.loads(reordered))


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _reverse_keys(value[name]) for name in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(item) for item in value]
    return value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user", "end-user-42"),
        ("safety_identifier", "hash-of-user"),
        ("stream", True),
        ("stream_options", {"include_usage": True}),
        ("metadata", {"trace": "abc"}),
        ("store", True),
        ("service_tier", "flex"),
        ("prompt_cache_key", "conversation-7"),
        ("model", "some-alias"),
        ("seed", None),  # an explicit null is the field being absent
    ],
)
def test_irrelevant_fields_do_not_change_the_key(field: str, value: Any) -> None:
    assert key({**BODY, field: value}) == key(BODY)


def test_a_null_field_is_an_absent_field() -> None:
    without = {name: value for name, value in BODY.items() if name != "temperature"}
    assert key({**BODY, "temperature": None}) == key(without) != key(BODY)


def test_the_ignored_fields_are_the_documented_ones() -> None:
    assert {
        "model",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
    } == IGNORED_FIELDS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("messages", [{"role": "user", "content": "Say goodbye."}]),
        ("tools", []),
        ("tool_choice", "required"),
        ("temperature", 0.3),
        ("top_p", 0.9),
        ("max_tokens", 64),
        ("max_completion_tokens", 64),
        ("n", 1),
        ("stop", ["\n"]),
        ("seed", 7),
        ("response_format", {"type": "json_object"}),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("parallel_tool_calls", False),
        ("reasoning_effort", "low"),
        ("modalities", ["text"]),
        ("prediction", {"type": "content", "content": "hello"}),
        ("web_search_options", {}),
        ("verbosity", "low"),
        ("some_future_field", 1),  # unknown fields stay in the key: an exclusion list, not an inclusion list
    ],
)
def test_every_answer_changing_field_changes_the_key(field: str, value: Any) -> None:
    assert key({**BODY, field: value}) != key(BODY)


def test_a_change_deep_inside_a_message_changes_the_key() -> None:
    changed = orjson.loads(orjson.dumps(BODY))
    changed["messages"][1]["content"] = "Say hello!"
    assert key(changed) != key(BODY)


def test_the_model_group_is_part_of_the_key() -> None:
    assert key(BODY, group="gpt-4o") != key(BODY, group="gpt-4o-mini")


def test_two_users_get_two_keys_and_global_scope_one() -> None:
    alice, bob = key(BODY, scope_id="alice"), key(BODY, scope_id="bob")
    assert alice != bob
    assert key(BODY, scope_id=None) == key(BODY, scope_id=None)
    assert key(BODY, scope_id=None) not in {alice, bob}
    # the scope is data, not text glued to the body: no user id can impersonate the global scope
    assert key(BODY, scope_id="None") != key(BODY, scope_id=None)
    assert key(BODY, scope_id="") != key(BODY, scope_id=None)


@pytest.mark.parametrize(
    ("extra", "cacheable"),
    [
        ({}, True),
        ({"n": 1}, True),
        ({"n": None}, True),
        ({"stream": True}, True),
        ({"temperature": 1.5}, True),
        ({"n": 2}, False),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, False),
        ({"audio": {"voice": "alloy", "format": "wav"}}, False),
        ({"messages": []}, False),
        ({"messages": "hello"}, False),
    ],
)
def test_is_cacheable(extra: dict[str, Any], cacheable: bool) -> None:
    assert is_cacheable({**BODY, **extra}) is cacheable

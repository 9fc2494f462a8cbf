"""Properties of ``cache_key``: equal requests share a key, a request that could be answered differently never does.

"Equal" covers key order at every depth, the fields that do not change the answer (the model alias,
``stream``, ``user``, ``metadata``, ...) and top-level ``null`` (the API reads it as absent).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.cache import cache_key
from tests.strategies import (
    IGNORE_RANDOM_FROM_OTHER_THREADS,
    JSON_VALUES,
    OPTIONAL_FIELDS,
    PROPERTY_SETTINGS,
    chat_requests,
)

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

GROUPS = st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest"])
SCOPES = st.none() | st.sampled_from(["alice", "bob"])
# The contract, stated here rather than read from the module under test: the fields that cannot change
# the answer. Everything else, unknown fields included, can.
NOT_ANSWER_CHANGING = frozenset(
    {"model", "stream", "stream_options", "user", "safety_identifier", "metadata", "store", "service_tier",
     "prompt_cache_key", "prompt_cache_retention"}
)  # fmt: skip


def reorder(value: Any, draw: st.DrawFn) -> Any:
    """The same JSON value with every object's keys in a drawn order."""
    if isinstance(value, dict):
        keys = draw(st.permutations(list(value)))
        return {key: reorder(value[key], draw) for key in keys}
    if isinstance(value, list):
        return [reorder(item, draw) for item in value]
    return value


@st.composite
def equal_twins(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request, and one that asks for exactly the same answer."""
    body = draw(chat_requests())
    twin = reorder(copy.deepcopy(body), draw)
    for name in draw(st.lists(st.sampled_from(sorted(NOT_ANSWER_CHANGING)), unique=True)):
        if draw(st.booleans()):
            twin[name] = draw(JSON_VALUES)
        else:
            twin.pop(name, None)
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONAL_FIELDS)), unique=True, max_size=3)):
        if name not in twin:
            twin[name] = None
    return body, reorder(twin, draw)


@PROPERTY_SETTINGS
@given(equal_twins(), GROUPS, SCOPES)
def test_equal_requests_give_equal_keys(twins: tuple[dict[str, Any], dict[str, Any]], group: str, scope: Any) -> None:
    body, twin = twins
    assert cache_key(body, group=group, scope_id=scope) == cache_key(twin, group=group, scope_id=scope)


# Every optional request field that can change the answer; each example changes every one of them.
ANSWER_CHANGING = sorted(set(OPTIONAL_FIELDS) - NOT_ANSWER_CHANGING)


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def other_value(data: st.DataObject, strategy: st.SearchStrategy[Any], old: Any, label: str) -> Any:
    """A non-null value whose JSON differs from ``old``."""
    return data.draw(strategy.filter(lambda new: new is not None and canonical(new) != canonical(old)), label=label)


@PROPERTY_SETTINGS
@given(chat_requests(), st.data(), GROUPS, SCOPES)
def test_a_change_that_can_change_the_answer_changes_the_key(
    body: dict[str, Any], data: st.DataObject, group: str, scope: Any
) -> None:
    def key(request: dict[str, Any]) -> str:
        return cache_key(request, group=group, scope_id=scope)

    original = key(body)
    for name in ANSWER_CHANGING:
        changed = {**body, name: other_value(data, OPTIONAL_FIELDS[name] | JSON_VALUES, body.get(name), name)}
        assert key(changed) != original, f"{name} changed"
        if body.get(name) is not None:
            assert key({k: v for k, v in body.items() if k != name}) != original, f"{name} dropped"
            assert key({**body, name: None}) != original, f"{name} set to null"
    messages = copy.deepcopy(body["messages"])
    message = messages[data.draw(st.integers(0, len(messages) - 1), label="message")]
    field = data.draw(st.sampled_from(sorted(message)), label="message field")
    message[field] = other_value(data, JSON_VALUES, message[field], field)
    assert key({**body, "messages": messages}) != original, f"messages[].{field} changed"
    unknown = data.draw(
        st.text(min_size=1, max_size=8).filter(lambda n: n not in body and n not in NOT_ANSWER_CHANGING)
    )
    assert key({**body, unknown: other_value(data, JSON_VALUES, None, unknown)}) != original, "an unknown field added"


@PROPERTY_SETTINGS
@given(chat_requests(), GROUPS, GROUPS, SCOPES, SCOPES)
def test_the_model_group_and_the_scope_are_part_of_the_key(
    body: dict[str, Any], group: str, other_group: str, scope: Any, other_scope: Any
) -> None:
    same = group == other_group and scope == other_scope
    key = cache_key(body, group=group, scope_id=scope)
    assert (key == cache_key(body, group=other_group, scope_id=other_scope)) == same

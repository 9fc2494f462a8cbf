"""The response cache through the gateway: a real gateway, the ``openai`` SDK or raw HTTP in front, fake
providers behind, and the upstream's received-request count asserted every time.

Tests that depend on the backend run twice: the in-process LRU (embedded mode) and Redis (shared mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.cache_support import (
    JSON,
    MESSAGES,
    MakeCaller,
    caller_pool,
    chunks,
    redis_env,
    stored_entries,
    stream_text,
    wait_for_entries,
)
from tests.conftest import StartGateway
from tests.fakes import Fail, FailMidStream, FakeProvider, Reply
from tests.pricing_support import spend_usd

pytestmark = pytest.mark.integration

BODY: JSON = {"model": "gpt-4o-mini", "messages": MESSAGES}
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("get_weather", "get_time")
]
TOOL_CALLS = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
]


@pytest.fixture(params=["memory", "redis"])
def env(request: pytest.FixtureRequest, fake_env: dict[str, str]) -> dict[str, str]:
    """The fakes' environment with the in-process cache, or with Redis under a prefix of the test's own."""
    if request.param == "memory":
        return fake_env
    return {**fake_env, **redis_env(request.getfixturevalue("redis_url"))}


@pytest.fixture
def callers() -> Iterator[MakeCaller]:
    with caller_pool() as make:
        yield make


def remaining_requests(headers: Any) -> int:
    return int(headers["x-ratelimit-remaining-requests"])


def content(answer: JSON) -> str:
    text: str = answer["choices"][0]["message"]["content"]
    return text


# -- hit, miss, bypass ------------------------------------------------------------------------


def test_miss_then_hit_answers_the_same_body_without_the_upstream_and_charges_nothing(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(env))
    upstream = fakes["openai"]

    first_headers, first = alice.create(**BODY)
    first_bytes = alice.last_body
    assert first_headers["x-gateway-cache"] == "miss" and first_headers["x-gateway-provider"] == "openai"
    assert upstream.count == 1
    charged = alice.usage_after(1)
    assert charged["used_tokens"] == 11 + 7

    second_headers, second = alice.create(**BODY)
    assert second_headers["x-gateway-cache"] == "hit"
    assert upstream.count == 1
    assert second == first  # the same id, created, usage: the stored answer, not a new one
    assert alice.last_body == first_bytes
    # still counted toward the request rate ...
    assert remaining_requests(second_headers) == remaining_requests(first_headers) - 1
    # ... and served for free: one more request in the ledger, no more tokens
    after = alice.usage_after(2)
    assert after["used_tokens"] == charged["used_tokens"]
    assert after["by_model"]["gpt-4o-mini"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "requests": 2,
        "spend_usd": spend_usd("gpt-4o-mini", (11, 7)),  # the hit cost nothing
    }

    # the SDK reads the hit like any answer
    parsed = alice.sdk.chat.completions.create(**BODY)
    assert parsed.id == first["id"] and parsed.choices[0].message.content == "Hello from openai"
    assert upstream.count == 1


def test_a_hit_is_refused_by_the_rate_limit_like_any_request(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(fake_env), rate_limit_per_minute=2)
    assert alice.create(**BODY)[0]["x-gateway-cache"] == "miss"
    assert alice.create(**BODY)[0]["x-gateway-cache"] == "hit"
    with pytest.raises(openai.RateLimitError) as refused:
        alice.create(**BODY)
    assert refused.value.code == "rate_limit_exceeded" and "retry-after" in refused.value.response.headers
    assert fakes["openai"].count == 1


def test_no_cache_skips_the_lookup_and_refreshes_the_entry(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(env))
    upstream = fakes["openai"]
    upstream.push(Reply("old answer"), Reply("new answer"))

    headers, answer = alice.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer)) == ("miss", "old answer")

    headers, refreshed = alice.create({"cache-control": "no-cache"}, **BODY)
    assert upstream.count == 2  # looked up nothing: asked the upstream although an entry existed
    assert (headers["x-gateway-cache"], content(refreshed)) == ("bypass", "new answer")

    headers, answer = alice.create(**BODY)
    assert upstream.count == 2
    assert headers["x-gateway-cache"] == "hit" and answer == refreshed  # the entry now holds the new answer


def test_no_store_neither_looks_up_nor_stores(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway(env)
    alice = callers(gateway)
    upstream = fakes["openai"]
    upstream.push(Reply("stored"), Reply("private"), Reply("private too"), Reply("fresh"))

    assert alice.create(**BODY)[0]["x-gateway-cache"] == "miss"
    headers, answer = alice.create({"cache-control": "no-store"}, **BODY)
    assert upstream.count == 2  # the entry was not read ...
    assert (headers["x-gateway-cache"], content(answer)) == ("bypass", "private")
    assert alice.create(**BODY)[1]["choices"][0]["message"]["content"] == "stored"  # ... nor overwritten

    other = {**BODY, "messages": [{"role": "user", "content": "Something else."}]}
    headers, answer = alice.create({"Cache-Control": "private, no-store"}, **other)
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("bypass", "private too", 3)
    assert stored_entries(gateway) == 1
    headers, answer = alice.create(**other)
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("miss", "fresh", 4)

    streamed = {**BODY, "messages": [{"role": "user", "content": "A third thing."}]}
    response, payloads = alice.stream(streamed, headers={"cache-control": "no-store"})
    assert response.headers["x-gateway-cache"] == "bypass" and stream_text(chunks(payloads)) == "Hello from openai"
    time.sleep(0.3)  # a stream's answer would be stored after its end
    assert stored_entries(gateway) == 2 and upstream.count == 5


def test_entries_expire_after_the_ttl(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway({**env, "CACHE_TTL_SECONDS": "1"}))
    upstream = fakes["openai"]
    upstream.push(Reply("before"), Reply("after"))

    assert alice.create(**BODY)[0]["x-gateway-cache"] == "miss"
    headers, answer = alice.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("hit", "before", 1)
    time.sleep(1.2)
    headers, answer = alice.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("miss", "after", 2)


# -- what the key is made of ------------------------------------------------------------------


def test_field_order_and_whitespace_do_not_change_the_key(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(fake_env))
    compact = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"temperature":0.5,"seed":7}'
    spread = (
        b'{\n  "seed": 7,\n  "temperature": 0.5,\n'
        b'  "messages": [ { "content" : "Say hello.",\t"role": "user" } ],\r\n  "model": "gpt-4o-mini"\n}\n'
    )
    first = alice.post(compact)
    assert (first.status_code, first.headers["x-gateway-cache"]) == (200, "miss")
    second = alice.post(spread)
    assert (second.status_code, second.headers["x-gateway-cache"]) == (200, "hit")
    assert second.json() == first.json()
    assert fakes["openai"].count == 1


def test_user_metadata_and_store_do_not_change_the_key_but_temperature_does(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(fake_env))
    upstream = fakes["openai"]
    headers, first = alice.create(**BODY, temperature=0.2)
    assert headers["x-gateway-cache"] == "miss"

    for extra in ({"user": "end-user-42"}, {"metadata": {"ticket": "T-1"}, "store": True}, {"user": "someone-else"}):
        headers, answer = alice.create(**BODY, temperature=0.2, **extra)
        assert headers["x-gateway-cache"] == "hit", extra
        assert answer == first
    assert upstream.count == 1

    headers, answer = alice.create(**BODY, temperature=0.9)
    assert headers["x-gateway-cache"] == "miss" and answer["id"] != first["id"]
    assert upstream.count == 2
    assert upstream.chat_requests[-1].body["temperature"] == 0.9


def test_stream_options_do_not_change_the_key(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(fake_env))
    alice.create(**BODY)
    for options in ({"include_usage": True}, {"include_usage": False}, None):
        body = BODY if options is None else {**BODY, "stream_options": options}
        response, _ = alice.stream(body)
        assert response.headers["x-gateway-cache"] == "hit", options
    assert fakes["openai"].count == 1


# -- scope ------------------------------------------------------------------------------------


def test_one_user_never_receives_another_users_answer(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway(env)
    alice, bob = callers(gateway, "alice"), callers(gateway, "bob")
    upstream = fakes["openai"]
    upstream.push(Reply("for alice"), Reply("for bob"))

    assert alice.create(**BODY)[0]["x-gateway-cache"] == "miss"
    headers, answer = bob.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("miss", "for bob", 2)
    # each has an entry of their own now
    assert content(alice.create(**BODY)[1]) == "for alice"
    assert content(bob.create(**BODY)[1]) == "for bob"
    assert upstream.count == 2
    # a second key of alice's is still alice: her entry
    other_key = callers(gateway, "alice")
    headers, answer = other_key.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("hit", "for alice", 2)


def test_global_scope_shares_answers_across_users(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway({**env, "CACHE_SCOPE": "global"})
    alice, bob = callers(gateway, "alice"), callers(gateway, "bob")
    _, first = alice.create(**BODY)
    headers, answer = bob.create(**BODY)
    assert (headers["x-gateway-cache"], answer, fakes["openai"].count) == ("hit", first, 1)
    # bob is not charged for alice's tokens
    assert bob.usage_after(1)["used_tokens"] == 0


# -- streaming --------------------------------------------------------------------------------


def stream_events(parsed: list[JSON]) -> list[tuple[Any, ...]]:
    """A stream as a client assembles it, in order: consecutive text (and one call's argument) pieces joined.

    Chunk boundaries carry no meaning in OpenAI's protocol; a replay sends a text in one piece.
    """
    events: list[list[Any]] = []
    for chunk in parsed:
        if not chunk["choices"]:
            events.append(["usage", chunk["usage"]])
            continue
        (choice,) = chunk["choices"]
        delta = choice["delta"]
        if delta.get("role"):
            events.append(["role", delta["role"]])
        if delta.get("content"):
            if events and events[-1][0] == "content":
                events[-1][1] += delta["content"]
            else:
                events.append(["content", delta["content"]])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if call.get("id"):
                events.append(["tool_call", call["index"], call["id"], call.get("type"), function.get("name")])
            if function.get("arguments"):
                if events and events[-1][:2] == ["arguments", call["index"]]:
                    events[-1][2] += function["arguments"]
                else:
                    events.append(["arguments", call["index"], function["arguments"]])
        if choice["finish_reason"]:
            events.append(["finish", choice["finish_reason"]])
    return [tuple(event) for event in events]


def test_a_cached_answer_is_replayed_as_a_well_formed_stream(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    alice = callers(start_gateway(env))
    fakes["openai"].push(Reply("Paragraph one.\n\nParagraph two, with ünïcode and 🎉."))
    _, cached = alice.create(**BODY)

    response, payloads = alice.stream(BODY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-gateway-cache"] == "hit"
    plain = chunks(payloads)
    assert stream_text(plain) == content(cached)
    assert stream_events(plain) == [("role", "assistant"), ("content", content(cached)), ("finish", "stop")]
    assert all((c["id"], c["model"], c["created"]) == (cached["id"], cached["model"], cached["created"]) for c in plain)
    assert all("usage" not in c for c in plain)  # not asked for

    _, payloads = alice.stream({**BODY, "stream_options": {"include_usage": True}})
    with_usage = chunks(payloads)
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"] == cached["usage"]
    assert all(c["usage"] is None for c in with_usage[:-1])
    assert stream_events(with_usage) == [*stream_events(plain), ("usage", cached["usage"])]

    # and the SDK reads it like any stream
    sdk_chunks = list(alice.sdk.chat.completions.create(**BODY, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in sdk_chunks if c.choices) == content(cached)
    assert fakes["openai"].count == 1


def test_a_streamed_answer_is_stored_for_both_twins(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway(env)
    alice = callers(gateway)
    fakes["openai"].push(Reply("one two three four", chunks=4, prompt_tokens=13, completion_tokens=4))

    response, payloads = alice.stream(BODY)
    assert response.headers["x-gateway-cache"] == "miss"
    original = chunks(payloads)
    assert stream_text(original) == "one two three four"
    wait_for_entries(gateway, 1)  # stored once the stream has ended

    response, payloads = alice.stream(BODY)
    assert response.headers["x-gateway-cache"] == "hit"
    assert stream_events(chunks(payloads)) == stream_events(original)

    headers, answer = alice.create(**BODY)
    assert headers["x-gateway-cache"] == "hit"
    assert answer["object"] == "chat.completion" and answer["id"] == original[0]["id"]
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "one two three four", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert answer["usage"]["prompt_tokens"] == 13 and answer["usage"]["completion_tokens"] == 4
    parsed = alice.sdk.chat.completions.create(**BODY)
    assert parsed.choices[0].message.content == "one two three four"
    assert fakes["openai"].count == 1


@pytest.mark.parametrize(
    ("model", "provider"), [("gpt-4o-mini", "openai"), ("anthropic/claude-3-5-haiku-latest", "anthropic")]
)
@pytest.mark.parametrize(
    "reply", [Reply("The quick brown fox jumps over the lazy dog.", chunks=9), Reply(tool_calls=TOOL_CALLS)]
)
def test_a_replayed_stream_equals_the_original_chunk_by_chunk(
    start_gateway: StartGateway,
    env: dict[str, str],
    fakes: dict[str, FakeProvider],
    callers: MakeCaller,
    model: str,
    provider: str,
    reply: Reply,
) -> None:
    """Role, text, each tool call (id, type, name, then its arguments), finish reason, and the usage chunk
    exactly when asked for: in the same order, and under the original's id."""
    gateway = start_gateway(env)
    alice = callers(gateway)
    fakes[provider].push(reply)
    body = {"model": model, "messages": MESSAGES, "tools": TOOLS}

    response, payloads = alice.stream({**body, "stream_options": {"include_usage": True}})
    assert response.headers["x-gateway-cache"] == "miss"
    original = chunks(payloads)
    wait_for_entries(gateway, 1)

    _, payloads = alice.stream({**body, "stream_options": {"include_usage": True}})
    replayed = chunks(payloads)
    _, payloads = alice.stream(body)
    replayed_plain = chunks(payloads)
    assert fakes[provider].count == 1

    expected = stream_events(original)
    assert expected[-1][0] == "usage" and [e[0] for e in expected].count("usage") == 1
    assert stream_events(replayed) == expected
    assert stream_events(replayed_plain) == expected[:-1]  # the usage chunk only when asked for
    assert {c["id"] for c in replayed + replayed_plain} == {original[0]["id"]}
    assert {c["model"] for c in replayed + replayed_plain} == {original[0]["model"]}
    if reply.tool_calls:
        assert [e[2] for e in expected if e[0] == "tool_call"] == ["call_1", "call_2"]
        assert [orjson.loads(e[2]) for e in expected if e[0] == "arguments"] == [{"city": "Paris"}, {"tz": "CET"}]


# -- only whole, successful answers are stored -------------------------------------------------


def test_upstream_errors_are_not_stored(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway(env)
    alice = callers(gateway)
    fakes["openai"].push(Fail(400, "Bad tool schema."))  # not retryable: the caller gets it
    with pytest.raises(openai.BadRequestError):
        alice.create(**BODY)
    for fake in fakes.values():  # every deployment fails: 502
        fake.push(Fail(500))
    with pytest.raises(openai.APIStatusError) as failed:
        alice.create(**BODY)
    assert failed.value.status_code == 502
    assert stored_entries(gateway) == 0

    headers, answer = alice.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer)) == ("miss", "Hello from openai")
    assert fakes["openai"].count == 3


def test_a_stream_cut_mid_answer_is_not_stored(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway(env)
    alice = callers(gateway)
    fakes["openai"].push(FailMidStream(after_chunks=2, reply=Reply("a b c d e f", chunks=6)))

    response, payloads = alice.stream(BODY)
    assert response.headers["x-gateway-cache"] == "miss"
    assert b"[DONE]" not in payloads and "error" in orjson.loads(payloads[-1])
    time.sleep(0.3)  # the stream's settlement (where a whole answer would be stored) runs after its end
    assert stored_entries(gateway) == 0

    response, payloads = alice.stream(BODY)
    assert response.headers["x-gateway-cache"] == "miss"
    assert stream_text(chunks(payloads)) == "Hello from openai"
    assert fakes["openai"].count == 2
    wait_for_entries(gateway, 1)  # the whole one is


def test_a_stream_the_client_abandons_is_not_stored(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    gateway = start_gateway(fake_env)
    alice = callers(gateway)
    fakes["openai"].push(Reply("a b c d e f", chunks=6, chunk_delay=0.1))

    with alice.http.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as response:
        for line in response.iter_lines():
            if '"content":"a' in line:  # leave after the first word
                break
    time.sleep(1.0)  # the upstream would have finished by now
    assert stored_entries(gateway) == 0

    headers, _ = alice.create(**BODY)
    assert headers["x-gateway-cache"] == "miss" and fakes["openai"].count == 2


def test_an_answer_cut_short_by_the_callers_budget_is_not_stored(
    start_gateway: StartGateway, env: dict[str, str], fakes: dict[str, FakeProvider], callers: MakeCaller
) -> None:
    """Without ``max_tokens`` of the caller's, a nearly spent budget makes the gateway send its remainder as the
    limit: an answer that limit cut short belongs to this caller's budget, not to the request, and must not be
    replayed to anyone; an answer that finished within it is the request's answer."""
    gateway = start_gateway({**env, "CACHE_SCOPE": "global"})
    nearly_spent = callers(gateway, "alice", monthly_token_budget=300)
    bob = callers(gateway, "bob")
    upstream = fakes["openai"]
    upstream.push(Reply("Once upon a", finish_reason="length"), Reply("Once upon a time, the end."))

    headers, answer = nearly_spent.create(**BODY)
    assert headers["x-gateway-cache"] == "miss" and answer["choices"][0]["finish_reason"] == "length"
    assert 0 < upstream.chat_requests[0].body["max_completion_tokens"] < 300

    headers, answer = bob.create(**BODY)
    assert (headers["x-gateway-cache"], content(answer)) == ("miss", "Once upon a time, the end.")
    assert upstream.chat_requests[1].body["max_completion_tokens"] == 4096  # the reserved allowance, always sent
    headers, answer = nearly_spent.create(**BODY)  # the whole answer, now stored, serves everyone
    assert (headers["x-gateway-cache"], content(answer), upstream.count) == ("hit", "Once upon a time, the end.", 2)

"""``POST /v1/messages`` end to end, with the official Anthropic SDK as the client: passed through natively to an
``anthropic`` deployment, translated for an ``openai`` one (answers, streams, tools), and falling back across
the two formats; the async client too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from tests.conftest import StartGateway
from tests.fakes import Fail, FakeProvider, Reply
from tests.fakes.anthropic_wire import thinking_signature
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import assert_ratelimit_headers
from tests.messages_support import CLAUDE, MakeAnthropic, sse_events, user_turn, write_groups

pytestmark = pytest.mark.integration

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_CALL = {
    "id": "call_w1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
}


# -- native: an anthropic deployment gets the caller's body ----------------------------------------------------


def test_native_create_forwards_the_body_and_betas_and_relays_the_answer(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    key = create_key(gateway.base_url, "nora")
    anthropic_fake = fakes["anthropic"]
    anthropic_fake.push(Reply("Hi there.", thinking="Be kind.", cache_read_tokens=40, cache_creation_tokens=5))
    client = claude(gateway, key)
    request = user_turn(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["END"],
        metadata={"user_id": "u-42"},
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    raw = client.messages.with_raw_response.create(
        **request, extra_headers={"anthropic-beta": "a,b"}, extra_body={"temperature": 0.3}
    )
    message = raw.parse()

    sent = anthropic_fake.chat_requests[0]
    assert sent.body == {**request, "temperature": 0.3}  # untouched (the model is already the deployment's)
    assert sent.headers["anthropic-version"] == raw.http_response.request.headers["anthropic-version"]
    assert sent.headers["anthropic-beta"] == "a,b"
    assert sent.headers["x-api-key"] == anthropic_fake.api_key
    assert key not in str(sent.headers) and "authorization" not in sent.headers

    assert message.id.startswith("msg_") and message.model == CLAUDE and message.stop_reason == "end_turn"
    assert [block.model_dump() for block in message.content] == [
        {"type": "thinking", "thinking": "Be kind.", "signature": thinking_signature("Be kind.")},
        {"type": "text", "text": "Hi there.", "citations": None},
    ]
    assert message.usage.input_tokens == 11 and message.usage.output_tokens == 7
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (40, 5)
    assert orjson.loads(raw.http_response.content)["content"][0]["signature"] == thinking_signature("Be kind.")
    headers = raw.headers
    assert headers["x-gateway-provider"] == "anthropic" and headers["x-gateway-attempts"] == "1"
    assert headers["request-id"] == headers["x-request-id"] and headers["request-id"]
    assert headers["x-gateway-cache"] == "miss"
    assert_ratelimit_headers(headers)


def test_a_routed_name_is_replaced_by_the_deployments_model(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    client = claude(gateway, create_key(gateway.base_url))
    request = user_turn(model="anthropic/claude-3-5-haiku-latest")
    message = client.messages.create(**request)
    sent = fakes["anthropic"].chat_requests[0]
    assert sent.body == {**request, "model": "claude-3-5-haiku-latest"}
    assert message.content[0].type == "text" and message.content[0].text == "Hello from anthropic"


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param({"auth_token": "{key}"}, id="auth-token-bearer"),  # Claude Code's ANTHROPIC_AUTH_TOKEN
        pytest.param({"api_key": None, "default_headers": {"x-api-key": "{key}"}}, id="x-api-key"),
    ],
)
def test_both_ways_of_sending_the_key_are_accepted(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic, credential: dict[str, Any]
) -> None:
    key = create_key(gateway.base_url, "ida")
    options = orjson.loads(orjson.dumps(credential).replace(b"{key}", key.encode()))
    client = claude(gateway, **options)
    message = client.messages.create(**user_turn())
    assert message.content[0].type == "text" and message.content[0].text == "Hello from anthropic"
    sent = fakes["anthropic"].chat_requests[0]
    assert key not in str(sent.headers)


# -- translated: an openai deployment answers in Anthropic's format --------------------------------------------


def test_translated_create_sends_chat_completions_and_answers_as_a_message(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    fakes["openai"].push(Reply("Bonjour.", prompt_tokens=21, completion_tokens=3))
    client = claude(gateway, create_key(gateway.base_url))
    raw = client.messages.with_raw_response.create(
        **user_turn(model="gpt-4o-mini", max_tokens=50),
        system="Answer in French.",
        metadata={"user_id": "u-7"},
        extra_body={"temperature": 0.5},  # SDK 2.17's create() no longer names the sampling parameters
        stop_sequences=["STOP"],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
    )
    message = raw.parse()

    assert fakes["anthropic"].chat_requests == []
    sent = fakes["openai"].chat_requests[0].body
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Say hello."}],
        "max_completion_tokens": 50,
        "temperature": 0.5,
        "stop": ["STOP"],
        "user": "u-7",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER_TOOL["input_schema"],
                },
            }
        ],
        "tool_choice": "auto",
    }
    body = orjson.loads(raw.http_response.content)
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "gpt-4o-mini"
    assert body["content"] == [{"type": "text", "text": "Bonjour."}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"]["input_tokens"] == 21 and body["usage"]["output_tokens"] == 3
    assert message.model == "gpt-4o-mini" and message.usage.output_tokens == 3
    assert raw.headers["x-gateway-provider"] == "openai"
    assert "x-gateway-dropped-params" not in raw.headers


def test_a_tool_call_round_trips_through_a_translated_deployment(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    openai_fake = fakes["openai"]
    openai_fake.push(Reply(tool_calls=[WEATHER_CALL]), Reply("It is sunny in Oslo."))
    client = claude(gateway, create_key(gateway.base_url))
    first = client.messages.create(**user_turn("Weather in Oslo?", model="gpt-4o-mini"), tools=[WEATHER_TOOL])
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use"
    assert (call.id, call.name, call.input) == ("call_w1", "get_weather", {"city": "Oslo"})

    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21C"}]},
    ]
    second = client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=history, tools=[WEATHER_TOOL])
    assert second.content[0].type == "text" and second.content[0].text == "It is sunny in Oslo."
    assert openai_fake.chat_requests[1].body["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "Sunny, 21C"},
    ]


# -- streams -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "provider"), [(CLAUDE, "anthropic"), ("gpt-4o-mini", "openai")])
def test_the_sdks_stream_helper_reads_native_and_translated_streams(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic, model: str, provider: str
) -> None:
    fakes[provider].push(Reply("one two three", prompt_tokens=13, completion_tokens=5))
    client = claude(gateway, create_key(gateway.base_url))
    with client.messages.stream(**user_turn(model=model)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert text == "one two three"
    assert final.content[0].type == "text" and final.content[0].text == "one two three"
    assert final.stop_reason == "end_turn" and final.model == model
    assert (final.usage.input_tokens, final.usage.output_tokens) == (13, 5)
    assert headers["x-gateway-provider"] == provider and headers["content-type"].startswith("text/event-stream")
    assert fakes[provider].chat_requests[0].body["stream"] is True


def test_a_translated_stream_is_well_formed_anthropic_sse(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(Reply("one two", prompt_tokens=9, completion_tokens=2))
    key = create_key(gateway.base_url)
    response, events = sse_events(gateway.base_url, user_turn(model="gpt-4o-mini", stream=True), key=key)
    assert response.status_code == 200
    assert [name for name, _ in events if name != "ping"] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = dict(events)
    start = data["message_start"]["message"]
    assert start["id"].startswith("msg_") and start["model"] == "gpt-4o-mini" and start["content"] == []
    assert data["content_block_start"] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [d["delta"] for name, d in events if name == "content_block_delta"]
    assert deltas == [{"type": "text_delta", "text": "one"}, {"type": "text_delta", "text": " two"}]
    assert data["message_delta"]["delta"]["stop_reason"] == "end_turn"
    assert data["message_delta"]["usage"]["output_tokens"] == 2
    assert fakes["openai"].chat_requests[0].body["stream_options"] == {"include_usage": True}


def test_a_tool_call_streams_as_input_json_deltas(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    fakes["openai"].push(Reply(tool_calls=[WEATHER_CALL]))
    client = claude(gateway, create_key(gateway.base_url))
    with client.messages.stream(**user_turn("Oslo?", model="gpt-4o-mini"), tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and (call.id, call.name, call.input) == ("call_w1", "get_weather", {"city": "Oslo"})


# -- fallback across formats ---------------------------------------------------------------------------------


@pytest.fixture
def anthropic_first(start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider],
                    tmp_path: Path) -> GatewayServer:  # fmt: skip
    """A gateway whose group ``claude-then-gpt`` tries the anthropic deployment, then the openai one."""
    chain = [{"provider": "anthropic", "model": CLAUDE}, {"provider": "openai", "model": "gpt-4o-mini"}]
    config = write_groups(tmp_path, fakes, {"claude-then-gpt": chain})
    return start_gateway({**fake_env, "GATEWAY_CONFIG": config})


@pytest.mark.parametrize("status", [529, 500])
def test_a_failing_anthropic_deployment_falls_back_to_openai_in_anthropics_format(
    anthropic_first: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic, status: int
) -> None:
    fakes["anthropic"].push(Fail(status), Fail(status))
    fakes["openai"].push(Reply("From OpenAI."), Reply("Streamed from OpenAI."))
    client = claude(anthropic_first, create_key(anthropic_first.base_url))

    raw = client.messages.with_raw_response.create(**user_turn(model="claude-then-gpt"))
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "From OpenAI."
    assert message.model == "gpt-4o-mini" and message.id.startswith("msg_")
    assert (raw.headers["x-gateway-attempts"], raw.headers["x-gateway-provider"]) == ("2", "openai")

    with client.messages.stream(**user_turn("Stream it.", model="claude-then-gpt")) as stream:
        text = "".join(stream.text_stream)
        headers = stream.response.headers
    assert text == "Streamed from OpenAI."
    assert (headers["x-gateway-attempts"], headers["x-gateway-provider"]) == ("2", "openai")
    assert len(fakes["anthropic"].chat_requests) == 2 and len(fakes["openai"].chat_requests) == 2


# -- the async client ----------------------------------------------------------------------------------------


async def test_the_async_client_creates_and_streams(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["anthropic"].push(Reply("Async hello."), Reply("Async stream."))
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base_url, api_key=create_key(gateway.base_url), max_retries=0, timeout=30
    ) as client:
        message = await client.messages.create(**user_turn())
        assert message.content[0].type == "text" and message.content[0].text == "Async hello."
        async with client.messages.stream(**user_turn("Stream it.")) as stream:
            pieces = [piece async for piece in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(pieces) == "Async stream." and final.usage.output_tokens == 7

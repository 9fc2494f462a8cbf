"""The Responses API through the gateway, as users call it: the official ``openai`` SDK's ``client.responses``
against the gateway on a real socket, the fakes behind it (OpenAI's with a native ``/v1/responses``, Anthropic's
and Groq's without: those are reached by translation).

What must hold: OpenAI answers natively (its body passed through, its events relayed); Anthropic and Groq answer
by translation, streams included, with the SDK's ``responses.stream()`` helper yielding the deltas and a whole
final response; a conversation continues across a change of provider, both ways; stored responses belong to
their caller alone (another caller's id is 404, or 400 as a previous_response_id, exactly as an unknown one);
function tools round-trip; built-in tools never reach a translated deployment; and the pipeline's rules hold
(cache only for store=false, ledger endpoint ``responses``, tokens charged from the upstream's usage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes import Fail, FailMidStream, FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import ledger_rows, sqlite_path, wait_for
from tests.messages_support import write_groups
from tests.sdk_support import MakeSdk

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"  # built in: openai (native) -> anthropic -> groq (both translated)
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_CALL = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
]


def anthropic_texts(fake: FakeProvider) -> list[Any]:
    """The messages Anthropic received in its last request, as (role, content) pairs."""
    body = fake.chat_requests[-1].body
    return [(message["role"], message["content"]) for message in body["messages"]]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


# --- one turn ---------------------------------------------------------------------------------


def test_openai_answers_natively_with_the_body_passed_through(
    gateway: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    raw = sdk(gateway).responses.with_raw_response.create(
        model=MODEL, input="Say hello.", instructions="Be brief.", max_output_tokens=64, metadata={"k": "v"}
    )
    response = raw.parse()
    assert response.output_text == "Hello from openai"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert raw.headers["x-gateway-provider"] == "openai"
    sent = fakes["openai"].responses_requests[0].body
    assert sent == {
        "model": "gpt-4o-mini",
        "input": "Say hello.",
        "instructions": "Be brief.",
        "max_output_tokens": 64,
        "metadata": {"k": "v"},
    }
    assert fakes["openai"].count == 0  # no chat completion was asked for


def test_a_fallback_answers_in_the_responses_format_by_translation(
    gateway: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(Fail(500))
    raw = sdk(gateway).responses.with_raw_response.create(
        model=MODEL, input="Say hello.", instructions="Be brief.", max_output_tokens=64
    )
    response = raw.parse()
    assert raw.headers["x-gateway-provider"] == "anthropic" and raw.headers["x-gateway-attempts"] == "2"
    assert response.output_text == "Hello from anthropic"
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    sent = fakes["anthropic"].chat_requests[0].body
    assert text_of(sent["system"]) == "Be brief." and sent["max_tokens"] == 64
    assert [(role, text_of(content)) for role, content in anthropic_texts(fakes["anthropic"])] == [
        ("user", "Say hello.")
    ]


def test_groq_answers_by_translation_and_max_output_tokens_cuts_it_incomplete(
    start_gateway: StartGateway, fake_env: dict[str, str], sdk: MakeSdk, fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    config = write_groups(tmp_path, fakes, {"fast": [{"provider": "groq", "model": "llama-3.3-70b-versatile"}]})
    gateway = start_gateway({**fake_env, "GATEWAY_CONFIG": config})
    fakes["groq"].push(Reply("cut sho", finish_reason="length"))
    response = sdk(gateway).responses.create(model="fast", input="Say hello.", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "cut sho"
    chat = fakes["groq"].chat_requests[0].body
    assert chat["messages"] == [{"role": "user", "content": "Say hello."}] and chat["max_completion_tokens"] == 3
    assert fakes["groq"].responses_requests == []


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_sdks_stream_helper_yields_deltas_and_a_whole_final_response(
    gateway: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider], provider: str
) -> None:
    if provider != "openai":
        fakes["openai"].push(Fail(503))
    fakes[provider].push(Reply("one two three four"))
    deltas: list[str] = []
    types: list[str] = []
    with sdk(gateway).responses.stream(model=MODEL, input="Count.") as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "one two three four" and len(deltas) > 1
    assert final.output_text == "one two three four" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 7
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    expected = [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert [t for t in types if t in expected] == expected


def test_a_stream_cut_after_its_first_content_ends_with_response_failed(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(FailMidStream(after_chunks=3))
    key = create_key(gateway.base_url)
    body = {"model": MODEL, "input": "Count.", "stream": True}
    with httpx.stream(
        "POST", f"{gateway.base_url}/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
    ) as response:
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert response.status_code == 200
    assert events[0] == "response.created" and events[-1] == "response.failed"
    assert "response.completed" not in events


# --- conversations ----------------------------------------------------------------------------


def test_a_conversation_started_on_openai_continues_on_anthropic_when_openai_fails(
    gateway: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(gateway)
    fakes["openai"].push(Reply("Nice to meet you, Ada."))
    first = client.responses.create(model=MODEL, input="My name is Ada.")
    fakes["openai"].push(Fail(503))
    second = client.responses.with_raw_response.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id
    )
    assert second.headers["x-gateway-provider"] == "anthropic"
    assert [(role, text_of(content)) for role, content in anthropic_texts(fakes["anthropic"])] == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]
    # And on again, natively: OpenAI never saw the Anthropic turn, so it gets the whole conversation.
    third = client.responses.create(model=MODEL, input="And again?", previous_response_id=second.parse().id)
    sent = fakes["openai"].responses_requests[-1].body
    assert "previous_response_id" not in sent
    assert [item.get("role") for item in sent["input"]] == ["user", "assistant", "user", "assistant", "user"]
    assert third.output_text == "Hello from openai"


def test_a_conversation_openai_holds_is_passed_through_by_id(
    gateway: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(gateway)
    first = client.responses.create(model=MODEL, input="My name is Ada.")
    client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    sent = fakes["openai"].responses_requests[-1].body
    assert sent["previous_response_id"] == first.id and sent["input"] == "What is my name?"


def test_function_tools_round_trip_through_a_translated_deployment(
    start_gateway: StartGateway, fake_env: dict[str, str], sdk: MakeSdk, fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    config = write_groups(tmp_path, fakes, {"fast": [{"provider": "groq", "model": "llama-3.3-70b-versatile"}]})
    client = sdk(start_gateway({**fake_env, "GATEWAY_CONFIG": config}))
    fakes["groq"].push(Reply(tool_calls=WEATHER_CALL))
    first = client.responses.create(model="fast", input="Weather in Oslo?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_1"
    assert call.arguments == '{"city":"Oslo"}'
    second = client.responses.create(
        model="fast",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "12 C, clear"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert second.output_text == "Hello from groq"
    messages = fakes["groq"].chat_requests[-1].body["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Oslo?"}
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "12 C, clear"}


# --- ownership --------------------------------------------------------------------------------


def test_stored_responses_belong_to_their_caller(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    def client(user: str) -> openai.OpenAI:
        key = create_key(gateway.base_url, user_id=user)
        return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0, timeout=20)

    with client("alice") as alice, client("mallory") as mallory:
        created = alice.responses.create(model=MODEL, input="A secret.")
        assert alice.responses.retrieve(created.id).output_text == "Hello from openai"
        with pytest.raises(openai.NotFoundError) as retrieved:
            mallory.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError) as unknown:
            mallory.responses.retrieve("resp_" + "0" * 32)
        assert retrieved.value.body == {**unknown.value.body, "message": retrieved.value.body["message"]}  # type: ignore[dict-item]
        with pytest.raises(openai.BadRequestError) as continued:
            mallory.responses.create(model=MODEL, input="Go on.", previous_response_id=created.id)
        assert continued.value.code == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            mallory.responses.delete(created.id)
        alice.responses.retrieve(created.id)  # still there
        alice.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(created.id)
    assert fakes["openai"].responses_requests[-1].body["input"] == "A secret."  # mallory's turns never left


def test_store_false_keeps_nothing_and_is_cached(
    gateway: GatewayServer, sdk: MakeSdk, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(gateway)
    first = client.responses.with_raw_response.create(model=MODEL, input="Say hi.", store=False)
    again = client.responses.with_raw_response.create(model=MODEL, input="Say hi.", store=False)
    assert (first.headers["x-gateway-cache"], again.headers["x-gateway-cache"]) == ("miss", "hit")
    assert again.parse().output_text == "Hello from openai" and len(fakes["openai"].responses_requests) == 1
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.parse().id)
    stored = client.responses.with_raw_response.create(model=MODEL, input="Say hi.")
    assert stored.headers["x-gateway-cache"] == "bypass"  # a stored response is always a new one


def test_a_cached_answer_replays_as_a_stream(gateway: GatewayServer, sdk: MakeSdk) -> None:
    client = sdk(gateway)
    client.responses.create(model=MODEL, input="Say hi.", store=False, stream=False)
    with client.responses.stream(model=MODEL, input="Say hi.", store=False) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Hello from openai" == final.output_text


# --- built-in tools, errors, the ledger -------------------------------------------------------


def test_a_builtin_tool_skips_translated_deployments(
    start_gateway: StartGateway, fake_env: dict[str, str], sdk: MakeSdk, fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    config = write_groups(
        tmp_path,
        fakes,
        {
            "mixed": [{"provider": "anthropic", "model": "claude-x"}, {"provider": "openai", "model": "gpt-4o"}],
            "claude": [{"provider": "anthropic", "model": "claude-x"}],
        },
    )
    client = sdk(start_gateway({**fake_env, "GATEWAY_CONFIG": config}))
    raw = client.responses.with_raw_response.create(
        model="mixed", input="News?", tools=[{"type": "web_search_preview"}]
    )
    assert raw.headers["x-gateway-provider"] == "openai"
    assert fakes["anthropic"].chat_requests == []
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="claude", input="News?", tools=[{"type": "web_search_preview"}])
    assert "web_search_preview" in refused.value.message and fakes["anthropic"].chat_requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "background": True}, "background"),
    ],
)
def test_bad_input_is_400_in_openais_envelope(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], body: dict[str, Any], param: str
) -> None:
    key = create_key(gateway.base_url)
    answer = httpx.post(
        f"{gateway.base_url}/v1/responses",
        json={"model": MODEL, **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error" and answer.json()["error"]["param"] == param
    assert fakes["openai"].responses_requests == []


def test_the_ledger_says_responses_and_charges_the_upstreams_usage(
    gateway: GatewayServer, sdk: MakeSdk, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(Reply(prompt_tokens=30, completion_tokens=12))
    sdk(gateway).responses.create(model=MODEL, input="Say hello.", stream=False)
    database = sqlite_path(fake_env["DATABASE_URL"])
    rows = wait_for(lambda: ledger_rows(database, endpoint="responses") or None, what="the ledger row")
    assert [(row["prompt_tokens"], row["completion_tokens"], row["provider"]) for row in rows] == [(30, 12, "openai")]

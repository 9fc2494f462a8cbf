"""The fake OpenAI's Responses API (``POST /v1/responses``) speaks the real wire: every answer and every stream
event validates against the official SDK's types, and the SDK's own clients and stream helper read them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes import Fail, FailMidStream, FakeProvider, Reply, Stall, StreamError
from tests.fakes.clients import sdk

pytest_plugins = ["tests.fakes.fixtures"]

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, verify=False) as client:
        yield client


def post(fake: FakeProvider, http: httpx.Client, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or fake.api_key}"}
    return http.post(f"{fake.base_url}/responses", json=body, headers=headers)


def events(fake: FakeProvider, http: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    """A streamed answer's events, each checked: an ``event:`` line naming its type, then one ``data:`` line."""
    response = post(fake, http, {"model": "gpt-4o-mini", "input": "hi", "stream": True, **body})
    assert response.headers["content-type"].startswith("text/event-stream")
    parsed = []
    for block in response.text.split("\n\n")[:-1]:
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        EVENTS.validate_python(event)
        parsed.append(event)
    assert [event["sequence_number"] for event in parsed] == list(range(len(parsed)))
    return parsed


def test_a_response_validates_and_is_kept(openai_fake: FakeProvider, http: httpx.Client) -> None:
    with sdk(openai_fake) as client:
        response = client.responses.create(model="gpt-4o-mini", input="hi", instructions="Be brief.")
    assert response.output_text == "Hello from openai"
    assert (response.status, response.model, response.instructions) == ("completed", "gpt-4o-mini", "Be brief.")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (11, 7, 18)
    [recorded] = openai_fake.responses_requests
    assert (recorded.path, recorded.body) == ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi",
                                                                "instructions": "Be brief."})  # fmt: skip
    assert openai_fake.count == 0  # chat requests only
    assert list(openai_fake.stored_responses) == [response.id] and response.id.startswith("resp_")

    openai_fake.push(Reply("cut", finish_reason="length", cache_read_tokens=4), Reply(tool_calls=[TOOL_CALL]))
    cut = post(openai_fake, http, {"model": "m", "input": [{"role": "user", "content": "hi"}], "store": False}).json()
    Response.model_validate(cut)
    assert (cut["status"], cut["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert cut["output"][0]["status"] == "incomplete" and cut["output"][0]["content"][0]["text"] == "cut"
    assert cut["usage"]["input_tokens_details"]["cached_tokens"] == 4
    assert cut["id"] not in openai_fake.stored_responses  # store: false
    called = post(openai_fake, http, {"model": "m", "input": "weather?", "tools": [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}).json()  # fmt: skip
    Response.model_validate(called)
    [item] = called["output"]
    assert item["id"].startswith("fc_")
    assert {k: item[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}',
        "status": "completed",
    }  # fmt: skip


def test_a_stream_follows_openais_event_sequence(openai_fake: FakeProvider, http: httpx.Client) -> None:
    openai_fake.push(Reply("one two three"), Reply("Weather:", tool_calls=[TOOL_CALL], chunks=1))
    text = events(openai_fake, http)
    assert [event["type"] for event in text] == [*TEXT_EVENTS, "response.completed"]
    assert "".join(event["delta"] for event in text if event["type"] == "response.output_text.delta") == "one two three"
    created, completed = text[0]["response"], text[-1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] == 7 and completed["output"][0] == text[-2]["item"]
    assert completed == openai_fake.stored_responses[created["id"]]

    called = events(openai_fake, http)
    assert [event["type"] for event in called] == [
        *TEXT_EVENTS[:5], *TEXT_EVENTS[7:],
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    call = called[-2]["item"]
    assert (call["call_id"], call["arguments"], call["status"]) == ("call_1", '{"city":"Paris"}', "completed")
    assert called[-6]["item"] == {**call, "arguments": "", "status": "in_progress"}
    assert called[-3]["arguments"] == call["arguments"] and called[-3]["item_id"] == call["id"]


def test_the_sdks_stream_helper_accumulates_the_fakes_events(openai_fake: FakeProvider) -> None:
    openai_fake.push(Reply("a b c", tool_calls=[TOOL_CALL]), Reply("a b", finish_reason="length"))
    with sdk(openai_fake) as client:
        with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
            deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
            final = stream.get_final_response()
        with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
            last = list(stream)[-1]
    assert deltas == ["a", " b", " c"]
    assert (final.output_text, final.status, final.output[1].type) == ("a b c", "completed", "function_call")
    assert openai_fake.responses_requests[0].body["stream"] is True
    assert last.type == "response.incomplete" and last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


def test_previous_response_id_must_be_one_the_fake_created(openai_fake: FakeProvider) -> None:
    with sdk(openai_fake) as client:
        first = client.responses.create(model="m", input="hi")
        unstored = client.responses.create(model="m", input="hi", store=False)
        openai_fake.push(Fail(500))
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="m", input="again", previous_response_id=unstored.id)
        with pytest.raises(openai.InternalServerError):  # the refusal consumed no behaviour
            client.responses.create(model="m", input="again", previous_response_id=first.id)
        second = client.responses.create(model="m", input="again", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert refused.value.body == {
        "message": f"Previous response with id '{unstored.id}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    openai_fake.reset()
    assert openai_fake.stored_responses == {}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"input": "hi"}, "model", "Missing required parameter: 'model'."),
        ({"model": 4, "input": "hi"}, "model", "Invalid type for 'model': expected a string, but got an integer"),
        ({"model": "m"}, "input", "Missing required parameter: 'input'."),
        ({"model": "m", "input": {"role": "user"}}, "input", "Invalid type for 'input'"),
        ({"model": "m", "input": ["hi"]}, "input[0]", "Invalid type for 'input[0]'"),
        ({"model": "m", "input": "hi", "stream": "yes"}, "stream", "Invalid type for 'stream'"),
    ],
)
def test_invalid_requests_are_refused_like_the_real_api(
    openai_fake: FakeProvider, http: httpx.Client, body: dict[str, Any], param: str, message: str
) -> None:
    openai_fake.push(Reply("kept"))
    refused = post(openai_fake, http, body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"].startswith(message)
    wrong_key = post(openai_fake, http, {"model": "m", "input": "hi"}, key="sk-wrong-key-1234")
    assert (wrong_key.status_code, wrong_key.json()["error"]["code"]) == (401, "invalid_api_key")
    assert post(openai_fake, http, {"model": "m", "input": "hi"}).json()["output"][0]["content"][0]["text"] == "kept"


def test_stream_failures(openai_fake: FakeProvider, http: httpx.Client) -> None:
    openai_fake.push(StreamError(1, message="boom"), FailMidStream(2), Stall(1, 0.1))
    failed = events(openai_fake, http)
    assert [event["type"] for event in failed] == [*TEXT_EVENTS[:5], "response.failed"]
    assert failed[-1]["response"]["status"] == "failed" and failed[-1]["response"]["id"] == failed[0]["response"]["id"]
    assert failed[-1]["response"]["error"] == {"code": "server_error", "message": "boom"}
    with pytest.raises(httpx.RemoteProtocolError):
        post(openai_fake, http, {"model": "m", "input": "hi", "stream": True})
    assert events(openai_fake, http)[-1]["type"] == "response.completed"  # the stall only paused it
    assert len(openai_fake.responses_requests) == 3


def test_responses_share_the_queue_with_chat(openai_fake: FakeProvider, http: httpx.Client) -> None:
    openai_fake.push(Fail(429), Reply("chat"))
    assert post(openai_fake, http, {"model": "m", "input": "hi"}).status_code == 429
    with sdk(openai_fake) as client:
        chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "chat"


@pytest.mark.parametrize("kind", ["groq", "anthropic"])
def test_only_the_openai_fake_serves_responses(kind: str, request: pytest.FixtureRequest, http: httpx.Client) -> None:
    fake: FakeProvider = request.getfixturevalue(f"{kind}_fake")
    url = f"{fake.base_url.removesuffix('/v1')}/v1/responses"  # Groq's base URL ends in /openai/v1, Anthropic's at /
    answer = http.post(url, json={"model": "m", "input": "hi"}, headers={"Authorization": f"Bearer {fake.api_key}"})
    assert answer.status_code == 404
    assert [r.path for r in fake.responses_requests] == [answer.url.path]
    assert fake.stored_responses == {}

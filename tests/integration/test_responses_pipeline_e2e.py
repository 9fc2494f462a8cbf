"""``POST /v1/responses`` runs the one pipeline, streams included: a streamed response is kept for its follow-up
(natively and by translation), a streamed tool call comes out whole through the SDK's helper, a stream past its
reservation ends with ``response.failed``, anonymous callers keep nothing, and ``/metrics`` names the route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes import FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import set_user
from tests.messages_support import write_groups
from tests.sdk_support import MakeSdk, requests_by_route

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
GROQ_ONLY = {"fast": [{"provider": "groq", "model": "llama-3.3-70b-versatile"}]}
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
}


def streamed(client: openai.OpenAI, **request: Any) -> tuple[list[str], Any]:
    """The SDK's ``responses.stream()`` helper: the event types and the final response."""
    with client.responses.stream(**request) as stream:
        types = [event.type for event in stream]
        return types, stream.get_final_response()


@pytest.mark.parametrize("provider", ["openai", "groq"])
def test_a_streamed_response_is_kept_for_its_follow_up(
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    sdk: MakeSdk,
    fakes: dict[str, FakeProvider],
    tmp_path: Path,
    provider: str,
) -> None:
    groups = {"chain": [{"provider": provider, "model": "m"}]}
    client = sdk(start_gateway({**fake_env, "GATEWAY_CONFIG": write_groups(tmp_path, fakes, groups)}))
    fakes[provider].push(Reply("Noted: blue."))
    _, first = streamed(client, model="chain", input="My colour is blue.")
    assert client.responses.retrieve(first.id).output_text == "Noted: blue."  # kept before the stream ended
    _, second = streamed(client, model="chain", input="My colour?", previous_response_id=first.id)
    assert second.output_text == f"Hello from {provider}"
    if provider == "openai":  # OpenAI holds the conversation: passed by id
        assert fakes["openai"].responses_requests[-1].body["previous_response_id"] == first.id
    else:  # expanded into the chat request
        messages = fakes["groq"].chat_requests[-1].body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] == "Noted: blue."


def test_a_streamed_tool_call_comes_out_whole_by_translation(
    start_gateway: StartGateway, fake_env: dict[str, str], sdk: MakeSdk, fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    client = sdk(start_gateway({**fake_env, "GATEWAY_CONFIG": write_groups(tmp_path, fakes, GROQ_ONLY)}))
    call = {"id": "call_7", "type": "function", "function": {"name": "lookup", "arguments": '{"word":"gateway"}'}}
    fakes["groq"].push(Reply(tool_calls=[call]))
    types, final = streamed(client, model="fast", input="Define gateway.", tools=[TOOL])
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    (item,) = final.output
    assert (item.type, item.name, item.call_id, item.arguments) == (
        "function_call",
        "lookup",
        "call_7",
        '{"word":"gateway"}',
    )


def test_anonymous_callers_keep_nothing(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    url = f"{gateway.base_url}/v1/responses"
    first = httpx.post(url, json={"model": MODEL, "input": "Hi."}, timeout=10)
    assert first.status_code == 200
    follow_up = httpx.post(
        url, json={"model": MODEL, "input": "Again.", "previous_response_id": first.json()["id"]}, timeout=10
    )
    assert follow_up.status_code == 400 and follow_up.json()["error"]["code"] == "previous_response_not_found"
    assert httpx.get(f"{url}/{first.json()['id']}", timeout=10).status_code == 401


def test_a_stream_past_its_reservation_ends_with_response_failed(
    start_gateway: StartGateway, fake_env: dict[str, str], fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    gateway = start_gateway({**fake_env, "GATEWAY_CONFIG": write_groups(tmp_path, fakes, GROQ_ONLY)})
    set_user(gateway.base_url, "ria", monthly_token_budget=100_000)
    key = create_key(gateway.base_url, "ria")
    headers = {"authorization": f"Bearer {key}"}
    fakes["groq"].push(Reply(" ".join(["word"] * 400), chunks=400))  # far past a cap of 16
    body = {"model": "fast", "input": "Talk.", "max_output_tokens": 16, "stream": True, "store": False}
    with httpx.stream("POST", f"{gateway.base_url}/v1/responses", json=body, headers=headers, timeout=20) as answer:
        events = [line.removeprefix("event: ") for line in answer.iter_lines() if line.startswith("event: ")]
    assert answer.status_code == 200
    assert events[0] == "response.created" and events[-1] == "response.failed"
    # Ended at the reservation (16, plus the meter's slack of 10 % + 32 for the estimate), not after 400 words.
    assert 16 <= events.count("response.output_text.delta") <= 16 * 11 // 10 + 32


def test_metrics_name_the_responses_route(gateway: GatewayServer, sdk: MakeSdk) -> None:
    sdk(gateway).responses.create(model=MODEL, input="Count me.")
    routes = requests_by_route(gateway.base_url)
    assert routes.get("/v1/responses") == 1, routes

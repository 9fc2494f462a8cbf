"""Azure OpenAI behind the gateway, end to end: the official SDKs (openai, anthropic) on a real socket, the fake
Azure resource behind it, on its deployment URLs (``api-version``, ``api-key``) and on its v1 path (an Entra ID
token); fallback to the fake OpenAI, each of Azure's error cases, and no secret in answers or logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.conftest import StartGateway
from tests.fakes import EchoHeaders, Fail, FakeProvider, Reply, StreamError, fake_embedding
from tests.fakes.azure_wire import FILTER_MESSAGE, FILTER_TRIGGER, entra_token
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.messages_support import MakeAnthropic
from tests.sdk_support import MakeSdk, sse_payloads

pytestmark = pytest.mark.integration

VERSION = "2024-10-21"
HELLO = [{"role": "user", "content": "Say hello."}]
TOOL_CALL = {"id": "call_7", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"Paris"}'}}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
GROUPS = {
    "chat": [{"provider": "azure", "model": "gpt-4o"}, {"provider": "openai", "model": "gpt-4o-mini"}],
    "chat-v1": [{"provider": "azure_v1", "model": "chat-prod"}, {"provider": "openai", "model": "gpt-4o-mini"}],
    "only-azure": [{"provider": "azure", "model": "gpt-4o"}],
    "bad-key": [{"provider": "azure_bad_key", "model": "gpt-4o"}, {"provider": "openai", "model": "gpt-4o-mini"}],
    "missing": [{"provider": "azure", "model": "gpt-5"}, {"provider": "openai", "model": "gpt-4o-mini"}],
    "embed": [{"provider": "azure", "model": "text-embedding-3-small"}],
    "embed-v1": [{"provider": "azure_v1", "model": "text-embedding-3-small"}],
}
# group -> (provider, the path its chat calls go to)
PATHS = {
    "chat": ("azure", f"/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}"),
    "chat-v1": ("azure_v1", "/openai/v1/chat/completions"),
}


@pytest.fixture
def azure_gateway(
    start_gateway: StartGateway, fake_env: dict[str, str], azure_fake: FakeProvider, fakes: dict[str, FakeProvider],
    tmp_path: Path,
) -> GatewayServer:  # fmt: skip
    providers = {
        "azure": {"type": "azure", "base_url": azure_fake.base_url, "api_key": azure_fake.api_key,
                  "api_version": VERSION},
        # the base URL as the openai SDK's docs give it for the v1 path
        "azure_v1": {"type": "azure", "base_url": f"{azure_fake.base_url}/openai/v1",
                     "azure_ad_token": entra_token(azure_fake.api_key)},
        "azure_bad_key": {"type": "azure", "base_url": azure_fake.base_url, "api_key": "revoked-key-0000",
                          "api_version": VERSION},
        "openai": {"type": "openai", "base_url": fakes["openai"].base_url, "api_key": fakes["openai"].api_key},
    }  # fmt: skip
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps({"providers": providers, "models": GROUPS}))
    return start_gateway({**fake_env, "GATEWAY_CONFIG": str(path)})


def sent_path(fake: FakeProvider, index: int = 0) -> str:
    """The path and query of a chat request the fake received (``Recorded.path`` has no query)."""
    recorded = fake.chat_requests[index]
    return recorded.path + (f"?api-version={VERSION}" if recorded.path.startswith("/openai/deployments/") else "")


# --- chat, both path styles, both credentials -----------------------------------------------------------


@pytest.mark.parametrize("group", ["chat", "chat-v1"])
def test_chat_reaches_the_deployment_with_its_credentials(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, fakes: dict[str, FakeProvider], group: str
) -> None:
    raw = sdk(azure_gateway).chat.completions.with_raw_response.create(model=group, messages=HELLO, max_tokens=50)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from azure"
    assert completion.usage is not None and completion.usage.total_tokens == 18
    assert raw.headers["x-gateway-provider"] == PATHS[group][0] and raw.headers["x-gateway-attempts"] == "1"
    # Azure's filter verdicts reach the caller as Azure sent them
    relayed = completion.model_dump()
    assert relayed["prompt_filter_results"][0]["content_filter_results"]["violence"]["filtered"] is False
    assert relayed["choices"][0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}

    [sent] = azure_fake.chat_requests
    deployment = GROUPS[group][0]["model"]
    assert sent.body == {"model": deployment, "messages": HELLO, "max_tokens": 50}
    if group == "chat":
        assert sent.path == f"/openai/deployments/{deployment}/chat/completions"
        assert sent.headers["api-key"] == azure_fake.api_key and "authorization" not in sent.headers
    else:
        assert sent.path == "/openai/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {entra_token(azure_fake.api_key)}"
        assert "api-key" not in sent.headers
    assert fakes["openai"].count == 0


@pytest.mark.parametrize("group", ["chat", "chat-v1"])
def test_a_stream_starts_with_the_role_chunk_carrying_the_prompt_filter(
    azure_gateway: GatewayServer, azure_fake: FakeProvider, group: str
) -> None:
    key = create_key(azure_gateway.base_url)
    body = {"model": group, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    response, payloads = sse_payloads(azure_gateway.base_url, body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200 and payloads[-1] == b"[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["prompt_filter_results"][0]["prompt_index"] == 0
    assert all(chunk["id"] and chunk["model"] == GROUPS[group][0]["model"] for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from azure"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18
    assert "content_filter_results" in chunks[1]["choices"][0]
    assert azure_fake.chat_requests[0].body["stream"] is True


def test_the_openai_sdk_streams_through_azure(azure_gateway: GatewayServer, sdk: MakeSdk) -> None:
    with sdk(azure_gateway).chat.completions.stream(model="chat", messages=HELLO) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello from azure"
    assert final.choices[0].finish_reason == "stop"


def test_an_error_right_after_the_preamble_still_falls_back(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, fakes: dict[str, FakeProvider]
) -> None:
    """Azure's preamble and role chunk are no content: the router still holds the stream and may fall back."""
    azure_fake.push(StreamError(0, message="The server had an error"))
    raw = sdk(azure_gateway).chat.completions.with_raw_response.create(model="chat", messages=HELLO, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == "Hello from openai"
    assert raw.headers["x-gateway-provider"] == "openai" and raw.headers["x-gateway-attempts"] == "2"
    assert azure_fake.count == 1 and fakes["openai"].count == 1


def test_a_streamed_answer_is_cached_with_its_real_id_and_model(
    azure_gateway: GatewayServer, azure_fake: FakeProvider
) -> None:
    headers = {"authorization": f"Bearer {create_key(azure_gateway.base_url)}"}
    body = {"model": "chat", "messages": HELLO, "stream": True}
    _, first = sse_payloads(azure_gateway.base_url, body, headers=headers)
    replayed_response, replayed = sse_payloads(azure_gateway.base_url, body, headers=headers)
    assert replayed_response.headers.get("x-gateway-cache") == "hit"
    assert azure_fake.count == 1, "the second answer is the cache's"
    chunks = [json.loads(p) for p in replayed[:-1]]
    assert {c["id"] for c in chunks} == {json.loads(first[0])["id"]} and {c["model"] for c in chunks} == {"gpt-4o"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from azure"


def test_a_tool_call_round_trip(azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider) -> None:
    azure_fake.push(Reply(tool_calls=[TOOL_CALL]), Reply("Sunny."))
    client = sdk(azure_gateway)
    asked = client.chat.completions.create(model="chat", messages=HELLO, tools=TOOLS)  # type: ignore[arg-type]
    call = asked.choices[0].message.tool_calls
    assert asked.choices[0].finish_reason == "tool_calls" and call is not None
    messages = [*HELLO, asked.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call[0].id, "content": "sunny"}]  # fmt: skip
    answered = client.chat.completions.create(model="chat", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert answered.choices[0].message.content == "Sunny."
    second = azure_fake.chat_requests[1].body
    assert second["messages"][1]["tool_calls"][0]["function"] == TOOL_CALL["function"]
    assert second["messages"][2] == {"role": "tool", "tool_call_id": "call_7", "content": "sunny"}
    assert second["tools"] == TOOLS


@pytest.mark.parametrize(("group", "path"), [
    ("embed", "/openai/deployments/text-embedding-3-small/embeddings"),
    ("embed-v1", "/openai/v1/embeddings"),
])  # fmt: skip
def test_embeddings(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, group: str, path: str
) -> None:
    answer = sdk(azure_gateway).embeddings.create(model=group, input=["a", "b"], encoding_format="float")
    assert [item.embedding for item in answer.data] == [fake_embedding("a"), fake_embedding("b")]
    [sent] = azure_fake.embeddings_requests
    assert sent.path == path and sent.body["model"] == "text-embedding-3-small"


# --- Azure's errors -----------------------------------------------------------------------------------


def test_429_falls_back_and_an_azure_only_429_carries_retry_after_ms(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, fakes: dict[str, FakeProvider]
) -> None:
    azure_fake.push(Fail(429, headers={"retry-after-ms": "2500", "retry-after": "3"}))
    raw = sdk(azure_gateway).chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai"
    assert raw.headers["x-gateway-attempts"] == "2"

    azure_fake.push(Fail(429, headers={"retry-after-ms": "1200"}))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(azure_gateway).chat.completions.create(model="only-azure", messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"  # 1.2 s, rounded up
    assert fakes["openai"].count == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_prompt_the_content_filter_refuses_is_the_callers_400_without_fallback(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, fakes: dict[str, FakeProvider],
    stream: bool,
) -> None:  # fmt: skip
    messages = [{"role": "user", "content": f"Tell me about {FILTER_TRIGGER}."}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(azure_gateway).chat.completions.create(model="chat", messages=messages, stream=stream)  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": f"{FILTER_MESSAGE} (filtered: violence medium)",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": "content_filter",
    }
    assert azure_fake.count == 1 and fakes["openai"].count == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_answer_filtered_on_the_way_out_is_relayed(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    azure_fake.push(Reply("The first part", finish_reason="content_filter"))
    client = sdk(azure_gateway)
    if stream:
        chunks = list(client.chat.completions.create(model="chat", messages=HELLO, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        verdict = chunks[-1].model_dump()["choices"][0]["content_filter_results"]
    else:
        completion = client.chat.completions.create(model="chat", messages=HELLO)
        text, finishes = completion.choices[0].message.content or "", [completion.choices[0].finish_reason]
        verdict = completion.model_dump()["choices"][0]["content_filter_results"]
    assert (text, finishes) == ("The first part", ["content_filter"])
    assert verdict["violence"] == {"filtered": True, "severity": "medium"}
    assert fakes["openai"].count == 0


@pytest.mark.parametrize("group", ["bad-key", "missing"])
def test_our_credentials_or_a_missing_deployment_fall_back(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, group: str
) -> None:
    """Azure's 401 (our key) and 404 DeploymentNotFound (our configuration) are not the caller's to see."""
    raw = sdk(azure_gateway).chat.completions.with_raw_response.create(model=group, messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert azure_fake.count == 1


# --- the other surfaces, by translation --------------------------------------------------------------


@pytest.mark.parametrize("group", ["chat", "chat-v1"])
def test_the_messages_api_through_azure(
    azure_gateway: GatewayServer, claude: MakeAnthropic, azure_fake: FakeProvider, group: str
) -> None:
    client = claude(azure_gateway, create_key(azure_gateway.base_url))
    message = client.messages.create(
        model=group, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert [block.text for block in message.content if block.type == "text"] == ["Hello from azure"]
    assert message.stop_reason == "end_turn" and message.usage.input_tokens == 11
    with client.messages.stream(model=group, max_tokens=64, messages=[{"role": "user", "content": "Hi."}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == "Hello from azure" and final.stop_reason == "end_turn"
    first = azure_fake.chat_requests[0].body
    assert first["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    assert first["max_completion_tokens"] == 64


FILTERED: list[anthropic.types.MessageParam] = [{"role": "user", "content": FILTER_TRIGGER}]


def test_a_prompt_the_content_filter_refuses_through_the_messages_api(
    azure_gateway: GatewayServer, claude: MakeAnthropic
) -> None:
    client = claude(azure_gateway, create_key(azure_gateway.base_url))
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="only-azure", max_tokens=64, messages=[{"role": "user", "content": FILTER_TRIGGER}]
        )
    assert caught.value.status_code == 400 and "content management policy" in caught.value.message


@pytest.mark.parametrize("group", ["chat", "chat-v1"])
def test_the_responses_api_through_azure(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, group: str
) -> None:
    client = sdk(azure_gateway)
    response = client.responses.create(model=group, input="Say hello.", instructions="Be brief.")
    assert response.output_text == "Hello from azure" and response.status == "completed"
    with client.responses.stream(model=group, input="Again.") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Hello from azure" and final.output_text == "Hello from azure"
    assert [r.path for r in azure_fake.chat_requests] == [PATHS[group][1].partition("?")[0]] * 2
    assert azure_fake.responses_requests == []  # translated through chat, never Azure's own /responses


# --- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["only-azure", "chat-v1"])
def test_no_secret_in_answers_or_logs(
    azure_gateway: GatewayServer, sdk: MakeSdk, azure_fake: FakeProvider, caplog: pytest.LogCaptureFixture,
    group: str,
) -> None:  # fmt: skip
    """Azure echoing every header it got (the key, the Entra token) in an error, plain and mid-stream."""
    caplog.set_level(logging.DEBUG)
    secrets = (azure_fake.api_key, entra_token(azure_fake.api_key))
    azure_fake.push(EchoHeaders(400), EchoHeaders(in_stream=True))
    key = create_key(azure_gateway.base_url)
    said: list[str] = []
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(azure_gateway).chat.completions.create(model=group, messages=HELLO)
    said.append(caught.value.response.text)
    assert "headers received" in caught.value.message and "***" in caught.value.message
    response, payloads = sse_payloads(azure_gateway.base_url, {"model": group, "messages": HELLO, "stream": True},
                                      headers={"authorization": f"Bearer {key}"})  # fmt: skip
    said.append(b"\n".join(payloads).decode())
    said.append(json.dumps(dict(response.headers)))
    assert any("headers received" in text for text in said[1:])
    logged = _logged(caplog.records)
    assert logged, "the gateway logged nothing: the check below would be vacuous"
    for secret in secrets:
        assert all(secret not in text for text in said)
        assert secret not in logged


def _logged(records: list[logging.LogRecord], render: Callable[[Any], str] = repr) -> str:
    return "\n".join(f"{record.getMessage()} {render(record.__dict__)}" for record in records)


def test_an_answer_filtered_on_the_way_out_through_messages_and_responses(
    azure_gateway: GatewayServer, claude: MakeAnthropic, sdk: MakeSdk, azure_fake: FakeProvider
) -> None:
    azure_fake.push(*[Reply("The first part", finish_reason="content_filter")] * 2)
    message = claude(azure_gateway, create_key(azure_gateway.base_url)).messages.create(
        model="chat", max_tokens=64, messages=[{"role": "user", "content": "Hi."}]
    )
    assert message.stop_reason == "refusal"
    response = sdk(azure_gateway).responses.create(model="chat", input="Hi again.")
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert (response.incomplete_details.reason, response.output_text) == ("content_filter", "The first part")

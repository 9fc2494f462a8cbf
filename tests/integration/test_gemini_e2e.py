"""The Gemini API and Vertex AI providers end to end: the gateway on a real socket with a YAML configuration,
the fake Gemini / Vertex AI (and its OAuth token endpoint) behind it, the official ``openai`` and ``anthropic``
SDKs in front. Chat, streams, tools, structured output, embeddings, the Messages and Responses surfaces by
translation, fallback on Google's errors, safety blocks relayed, Vertex tokens fetched and refreshed, and no
secret (API key, access token) in any answer or log line.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes import EchoHeaders, Fail, FailMidStream, FakeProvider, Reply, StreamError, fake_embedding
from tests.fakes.gemini_wire import GEMINI_EMBEDDING_DIMENSIONS, PROMPT_BLOCKED
from tests.fakes.google_token import TokenServer
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, create_key, sqlite_url
from tests.sdk_support import MakeSdk, sse_payloads

pytestmark = pytest.mark.integration

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
GROUPS = """\
models:
  gem:
    - {provider: google, model: gemini-2.5-flash}
    - {provider: openai, model: gpt-4o-mini}
  vtx:
    - {provider: gcp, model: gemini-2.5-flash}
    - {provider: openai, model: gpt-4o-mini}
  badkey:
    - {provider: google-badkey, model: gemini-2.5-flash}
    - {provider: google, model: gemini-2.5-flash}
  gem-embed:
    - {provider: google, model: gemini-embedding-001}
  vtx-embed:
    - {provider: gcp, model: text-embedding-005}
"""


def write_config(
    tmp_path: Path, gemini: FakeProvider, vertex: FakeProvider, openai_fake: FakeProvider, sa: Path
) -> str:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n"
        f"  google: {{type: gemini, api_key: {gemini.api_key}, base_url: '{gemini.base_url}'}}\n"
        f"  google-badkey: {{type: gemini, api_key: AIzaWrongKey0123456789, base_url: '{gemini.base_url}'}}\n"
        f"  gcp: {{type: vertex, project: test-project, location: us-central1, credentials_file: '{sa}', "
        f"base_url: '{vertex.base_url}'}}\n"
        f"  openai: {{type: openai, api_key: {openai_fake.api_key}, base_url: '{openai_fake.base_url}'}}\n" + GROUPS
    )
    return str(config)


@pytest.fixture
def gateway(
    start_gateway: StartGateway,
    gemini_fake: FakeProvider,
    vertex_fake: FakeProvider,
    openai_fake: FakeProvider,
    vertex_credentials: Path,
    tmp_path: Path,
) -> GatewayServer:
    env = {
        "GATEWAY_CONFIG": write_config(tmp_path, gemini_fake, vertex_fake, openai_fake, vertex_credentials),
        "LOG_LEVEL": "DEBUG",
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
    }
    return start_gateway(env)


def tokens_of(fake: FakeProvider) -> TokenServer:
    server = getattr(fake.wire, "tokens", None)
    assert isinstance(server, TokenServer)
    return server


# ------------------------------------------------------------------------------------------ chat


def test_chat_through_gemini(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="gem", messages=HELLO, temperature=0.2, stop=["END"], seed=7, user="someone"
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from gemini"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert raw.headers["x-gateway-provider"] == "google"
    assert raw.headers["x-gateway-dropped-params"] == "user"
    sent = gemini_fake.chat_requests[0]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == gemini_fake.api_key
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "Say hello."}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.2, "seed": 7, "maxOutputTokens": 4096, "stopSequences": ["END"]},
    }


def test_stream_through_gemini(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    gemini_fake.push(Reply("one two three", prompt_tokens=5, completion_tokens=3))
    chunks = list(
        sdk(gateway).chat.completions.create(
            model="gem", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 3)
    assert gemini_fake.chat_requests[0].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


def test_tools_round_trip_keeps_the_thought_signature(
    gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider
) -> None:
    call = {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    gemini_fake.push(Reply(tool_calls=[call], thinking="the user wants weather"), Reply("Sunny in Paris."))
    client = sdk(gateway)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="gem", messages=messages, tools=[WEATHER_TOOL], tool_choice="required")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    tool_call = choice.message.tool_calls[0]
    assert tool_call.function.name == "get_weather" and json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert "_ts_" in tool_call.id  # the signature rides in the id
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 24 C"},
    ]
    second = client.chat.completions.create(model="gem", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Sunny in Paris."
    first_sent, second_sent = (r.body for r in gemini_fake.chat_requests)
    assert first_sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert (
        first_sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
        == WEATHER_TOOL["function"]["parameters"]
    )  # type: ignore[index]
    model_turn, tool_turn = second_sent["contents"][1:]
    assert model_turn["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert model_turn["parts"][0]["thoughtSignature"]  # given back as Gemini sent it
    assert tool_turn == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny, 24 C"}}}],
    }


def test_response_format_json_schema(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    gemini_fake.push(Reply('{"answer": "hi"}'))
    completion = sdk(gateway).chat.completions.create(
        model="gem",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "hi"}
    config = gemini_fake.chat_requests[0].body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema


def test_n_above_eight_skips_gemini(
    gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider, openai_fake: FakeProvider
) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gem", messages=HELLO, n=9)
    assert raw.headers["x-gateway-provider"] == "openai" and gemini_fake.count == 0
    many = sdk(gateway).chat.completions.create(model="gem", messages=HELLO, n=3)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert gemini_fake.chat_requests[0].body["generationConfig"]["candidateCount"] == 3


# ----------------------------------------------------------------------------- errors, fallback


def test_resource_exhausted_falls_back(
    gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider, openai_fake: FakeProvider
) -> None:
    gemini_fake.push(Fail(429))
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gem", messages=HELLO)
    assert raw.headers["x-gateway-provider"] == "openai" and raw.headers["x-gateway-attempts"] == "2"
    assert raw.parse().choices[0].message.content == "Hello from openai"


def test_an_invalid_key_falls_back(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="badkey", messages=HELLO)
    assert raw.headers["x-gateway-provider"] == "google" and raw.headers["x-gateway-attempts"] == "2"
    assert [r.headers["x-goog-api-key"] for r in gemini_fake.chat_requests] == [
        "AIzaWrongKey0123456789",
        gemini_fake.api_key,
    ]


def test_an_invalid_argument_goes_back_to_the_caller(
    gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider, openai_fake: FakeProvider
) -> None:
    gemini_fake.push(Fail(400, "* GenerateContentRequest.contents: too long"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="gem", messages=HELLO)
    assert "too long" in str(caught.value) and openai_fake.count == 0


def test_a_stream_error_event_before_content_falls_back(
    gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider
) -> None:
    gemini_fake.push(StreamError(0))
    chunks = list(sdk(gateway).chat.completions.create(model="gem", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from openai"


def test_a_cut_stream_ends_with_an_error(gateway: GatewayServer, gemini_fake: FakeProvider) -> None:
    gemini_fake.push(
        FailMidStream(2, reply=Reply("a b c d", chunks=4)), StreamError(2, reply=Reply("a b c d", chunks=4))
    )
    key = create_key(gateway.base_url)
    body = {"model": "gem", "messages": HELLO, "stream": True}
    for expected in ("google closed the connection mid-answer", "google stream failed: UNAVAILABLE"):
        response, payloads = sse_payloads(gateway.base_url, body, headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200 and b"[DONE]" not in payloads
        assert json.loads(payloads[-1])["error"]["message"].startswith(expected)
        body = {**body, "messages": [*HELLO, {"role": "user", "content": "again"}]}


def test_safety_stop_is_relayed_as_content_filter(
    gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider, openai_fake: FakeProvider
) -> None:
    gemini_fake.push(Reply(finish_reason="content_filter"), Reply(finish_reason="content_filter"))
    completion = sdk(gateway).chat.completions.create(model="gem", messages=HELLO)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""
    chunks = list(sdk(gateway).chat.completions.create(model="gem", messages=HELLO, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"
    ]
    assert openai_fake.count == 0


def test_a_blocked_prompt_is_content_filter(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    gemini_fake.push(PROMPT_BLOCKED, PROMPT_BLOCKED)
    completion = sdk(gateway).chat.completions.create(model="gem", messages=HELLO)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    chunks = list(sdk(gateway).chat.completions.create(model="gem", messages=HELLO, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"
    ]


# ------------------------------------------------------------------------------------- surfaces


def test_embeddings_through_gemini(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    texts = ["the quick brown fox", "jumps"]
    answer = sdk(gateway).embeddings.create(model="gem-embed", input=texts, encoding_format="float")
    assert [item.embedding for item in answer.data] == [
        fake_embedding(text, GEMINI_EMBEDDING_DIMENSIONS) for text in texts
    ]
    assert answer.usage.prompt_tokens > 0
    raw = sdk(gateway).embeddings.with_raw_response.create(model="gem-embed", input="hello", dimensions=8, user="u1")
    assert raw.parse().data[0].embedding == pytest.approx(fake_embedding("hello", 8))  # the SDK asked for base64
    assert raw.headers["x-gateway-dropped-params"] == "user"  # Google's embeddings have no end-user field
    sent = gemini_fake.embeddings_requests[0]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body == {
        "requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": text}]}} for text in texts]
    }


def test_messages_surface_through_gemini(gateway: GatewayServer, gemini_fake: FakeProvider) -> None:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=create_key(gateway.base_url), max_retries=0) as client:
        message = client.messages.create(
            model="gem", max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Say hello."}]
        )
    assert message.content[0].type == "text" and message.content[0].text == "Hello from gemini"
    assert message.stop_reason == "end_turn"
    assert gemini_fake.chat_requests[0].body["generationConfig"]["maxOutputTokens"] == 100


def test_responses_surface_through_gemini(gateway: GatewayServer, sdk: MakeSdk, gemini_fake: FakeProvider) -> None:
    response = sdk(gateway).responses.create(model="gem", input="Say hello.", instructions="Be brief.", store=False)
    assert response.output_text == "Hello from gemini"
    assert gemini_fake.chat_requests[0].body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


# ---------------------------------------------------------------------------------------- vertex


def test_vertex_fetches_a_token_and_reuses_it(gateway: GatewayServer, sdk: MakeSdk, vertex_fake: FakeProvider) -> None:
    client = sdk(gateway)
    for i in range(3):
        asked = [{"role": "user", "content": f"Say hello {i}."}]  # distinct: no cache hit
        raw = client.chat.completions.with_raw_response.create(model="vtx", messages=asked)
        assert raw.headers["x-gateway-provider"] == "gcp"
        assert raw.parse().choices[0].message.content == "Hello from vertex"
    tokens = tokens_of(vertex_fake)
    assert tokens.requests == 1
    sent = vertex_fake.chat_requests[0]
    prefix = "/v1/projects/test-project/locations/us-central1/publishers/google/models"
    assert sent.path == f"{prefix}/gemini-2.5-flash:generateContent"
    assert sent.headers["authorization"] == f"Bearer {tokens.issued[0]}"


def test_vertex_refreshes_an_expiring_token(gateway: GatewayServer, sdk: MakeSdk, vertex_fake: FakeProvider) -> None:
    tokens = tokens_of(vertex_fake)
    tokens.lifetime = 12  # refreshed in the background at half its life; stale past 2 s (the 10 s skew)
    client = sdk(gateway)
    client.chat.completions.create(model="vtx", messages=HELLO)
    assert tokens.requests == 1
    time.sleep(3)  # the token is now too close to expiry to send: the next request waits for a new one
    later = [{"role": "user", "content": "Say hello again."}]
    chunks = list(client.chat.completions.create(model="vtx", messages=later, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from vertex"
    assert tokens.requests >= 2
    used = [r.headers["authorization"].removeprefix("Bearer ") for r in vertex_fake.chat_requests]
    assert used[0] != used[1] and all(token in tokens.issued for token in used)


def test_vertex_token_endpoint_failure_falls_back(
    gateway: GatewayServer, sdk: MakeSdk, vertex_fake: FakeProvider, openai_fake: FakeProvider
) -> None:
    tokens_of(vertex_fake).fail_next(400)
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="vtx", messages=HELLO)
    assert raw.headers["x-gateway-provider"] == "openai" and vertex_fake.count == 0
    assert raw.parse().choices[0].message.content == "Hello from openai"


def test_vertex_embeddings_by_predict(gateway: GatewayServer, sdk: MakeSdk, vertex_fake: FakeProvider) -> None:
    answer = sdk(gateway).embeddings.create(model="vtx-embed", input=["alpha", "beta gamma"], encoding_format="float")
    assert [item.embedding for item in answer.data] == [
        fake_embedding(text, GEMINI_EMBEDDING_DIMENSIONS) for text in ("alpha", "beta gamma")
    ]
    assert answer.usage.prompt_tokens == len("alpha") // 4 + 1 + len("beta gamma") // 4 + 1  # Vertex's counts
    assert vertex_fake.embeddings_requests[0].body == {"instances": [{"content": "alpha"}, {"content": "beta gamma"}]}


# ---------------------------------------------------------------------------------------- secrets


def test_no_key_or_token_in_answers_or_logs(
    gateway: GatewayServer,
    sdk: MakeSdk,
    gemini_fake: FakeProvider,
    vertex_fake: FakeProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = create_key(gateway.base_url)
    said: list[str] = []
    for model, fake in (("gem", gemini_fake), ("vtx", vertex_fake)):
        fake.push(EchoHeaders(400), EchoHeaders(in_stream=True))
        response = httpx.post(
            f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
            json={"model": model, "messages": HELLO}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 400 and "***" in response.text
        said.append(response.text)
        with httpx.stream(
            "POST", f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
            json={"model": model, "messages": HELLO, "stream": True}, timeout=30,
        ) as streamed:  # fmt: skip
            said.append(streamed.read().decode())
        assert "***" in said[-1]
    said.append(json.dumps([r.getMessage() for r in caplog.records]))
    secrets = [gemini_fake.api_key, *tokens_of(vertex_fake).issued]
    assert len(secrets) >= 2
    for text in said:
        for secret in secrets:
            assert secret not in text

"""AWS Bedrock end to end: the gateway on a real socket, a fake Bedrock runtime (SigV4 checked with botocore, real
event-stream frames) and a fake OpenAI behind it, the official SDKs in front (openai for chat and Responses,
anthropic for Messages)."""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from llm_gateway.errors import ProviderProtocolError, ProviderTimeout, ProviderUnreachable, UpstreamStreamError
from llm_gateway.http import UpstreamBounds
from llm_gateway.providers.bedrock.client import BedrockProvider
from llm_gateway.settings import ProviderConfig
from tests.conftest import StartGateway
from tests.fakes import (
    Delay,
    Drop,
    EchoHeaders,
    Fail,
    FailMidStream,
    FakeProvider,
    Flood,
    Raw,
    Reply,
    Stall,
    StreamError,
)  # fmt: skip
from tests.fakes.bedrock_wire import ACCESS_KEY_ID, REGION, TEMP_ACCESS_KEY_ID, session_token
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.messages_support import MakeAnthropic
from tests.sdk_support import MakeSdk, sse_payloads

pytestmark = pytest.mark.integration

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def write_config(tmp_path: Path, bedrock: FakeProvider, openai_fake: FakeProvider, **providers: dict[str, Any]) -> str:
    """bedrock (explicit keys), bedrock_key (a Bedrock API key), openai, and ``providers``; groups over them."""
    signed = {"type": "bedrock", "base_url": bedrock.base_url, "region": REGION}
    config = {
        "providers": {
            "bedrock": {**signed, "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": bedrock.api_key},
            "bedrock_key": {**signed, "api_key": bedrock.api_key},
            "openai": {"type": "openai", "api_key": openai_fake.api_key, "base_url": openai_fake.base_url},
            **providers,
        },
        "models": {
            "claude": [{"provider": "bedrock", "model": CLAUDE}, {"provider": "openai", "model": "gpt-4o-mini"}],
            "profile": [{"provider": "bedrock", "model": PROFILE}],
            "keyed": [{"provider": "bedrock_key", "model": CLAUDE}],
            **{
                name: [{"provider": name, "model": CLAUDE}, {"provider": "openai", "model": "gpt-4o-mini"}]
                for name in providers
            },
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps(config))  # JSON is YAML
    return str(path)


@pytest.fixture
def gateway(
    start_gateway: StartGateway, fake_env: dict[str, str], tmp_path: Path, bedrock_fake: FakeProvider, fakes: Any
) -> GatewayServer:
    return start_gateway({**fake_env, "GATEWAY_CONFIG": write_config(tmp_path, bedrock_fake, fakes["openai"])})


def test_chat_is_translated_to_converse_and_signed_with_sigv4(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider, fakes: Any
) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="claude", messages=HELLO, max_tokens=50, temperature=0.2, stop=["END"]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from bedrock"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert raw.headers["x-gateway-provider"] == "bedrock" and raw.headers["x-gateway-attempts"] == "1"
    assert "x-gateway-dropped-params" not in raw.headers
    sent = bedrock_fake.chat_requests[0]
    assert sent.path == f"/model/{CLAUDE}/converse"
    assert sent.body == {
        "messages": [{"role": "user", "content": [{"text": "Say hello."}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]},
    }
    authorization = sent.headers["authorization"]
    assert re.fullmatch(
        rf"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/\d{{8}}/{REGION}/bedrock/aws4_request, "
        r"SignedHeaders=accept;content-type;host;x-amz-date, Signature=[0-9a-f]{64}",
        authorization,
    ), authorization
    assert "x-amz-security-token" not in sent.headers
    assert fakes["openai"].count == 0


def test_an_inference_profile_arn_is_percent_encoded_in_the_path_and_signed_as_sent(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider
) -> None:
    completion = sdk(gateway).chat.completions.create(model="profile", messages=HELLO)
    assert completion.choices[0].message.content == "Hello from bedrock"
    assert bedrock_fake.chat_requests[0].path == f"/model/{PROFILE}/converse"
    raw_paths: list[str] = bedrock_fake._wire.raw_paths  # type: ignore[attr-defined]
    assert raw_paths == [
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
        "us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    ]


def test_a_stream_arrives_as_openai_chunks_with_usage(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider
) -> None:
    bedrock_fake.push(Reply("one two three", cache_read_tokens=5))
    stream = sdk(gateway).chat.completions.create(
        model="claude", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (16, 7, 23)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 5
    sent = bedrock_fake.chat_requests[0]
    assert sent.path == f"/model/{CLAUDE}/converse-stream"
    assert sent.headers["accept"] == "application/vnd.amazon.eventstream"


def test_tools_round_trip(gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider) -> None:
    bedrock_fake.push(Reply(tool_calls=[CALL]), Reply("It is sunny in Paris."))
    client = sdk(gateway)
    first = client.chat.completions.create(model="claude", messages=HELLO, tools=[WEATHER], tool_choice="required")  # type: ignore[list-item]
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and message.tool_calls[0].id == "tooluse_1"
    assert message.tool_calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    follow_up = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny, 21 C"},
    ]
    second = client.chat.completions.create(model="claude", messages=follow_up, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert second.choices[0].message.content == "It is sunny in Paris."
    spec = {
        "toolSpec": {
            "name": "get_weather",
            "inputSchema": {"json": WEATHER["function"]["parameters"]},  # type: ignore[index]
            "description": "The weather in a city.",
        }
    }
    assert bedrock_fake.chat_requests[0].body["toolConfig"] == {"tools": [spec], "toolChoice": {"any": {}}}
    assert bedrock_fake.chat_requests[1].body["toolConfig"] == {"tools": [spec]}
    assert bedrock_fake.chat_requests[1].body["messages"] == [
        {"role": "user", "content": [{"text": "Say hello."}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny, 21 C"}]}}]},
    ]


def test_messages_through_bedrock_with_the_anthropic_sdk(
    gateway: GatewayServer, claude: MakeAnthropic, bedrock_fake: FakeProvider
) -> None:
    message = claude(gateway, create_key(gateway.base_url)).messages.create(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "Hello from bedrock"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert bedrock_fake.chat_requests[0].body["inferenceConfig"] == {"maxTokens": 64}


def test_responses_through_bedrock_with_the_openai_sdk(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider
) -> None:
    response = sdk(gateway).responses.create(model="claude", input="Say hello.", max_output_tokens=40)
    assert response.output_text == "Hello from bedrock"
    assert response.status == "completed"
    assert bedrock_fake.chat_requests[0].body["messages"] == [{"role": "user", "content": [{"text": "Say hello."}]}]


def test_throttling_falls_back(gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider, fakes: Any) -> None:
    bedrock_fake.push(Fail(429))
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai"
    assert raw.headers["x-gateway-provider"] == "openai" and raw.headers["x-gateway-attempts"] == "2"
    assert bedrock_fake.count == 1


@pytest.mark.parametrize("kind", ["ModelNotReadyException", "ServiceQuotaExceededException", "ModelErrorException"])
def test_a_busy_model_falls_back_whatever_its_status(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider, kind: str
) -> None:
    bedrock_fake.push(Fail({"ModelErrorException": 424}.get(kind, 400), error_type=kind))
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert raw.headers["x-gateway-provider"] == "openai"


def test_a_wrong_secret_key_is_refused_by_the_signature_check_and_falls_back(
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    tmp_path: Path,
    bedrock_fake: FakeProvider,
    fakes: Any,
    sdk: MakeSdk,
) -> None:
    wrong = {
        "type": "bedrock", "base_url": bedrock_fake.base_url, "region": REGION,
        "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": "not-the-secret-key",
    }  # fmt: skip
    config = write_config(tmp_path, bedrock_fake, fakes["openai"], wrong_secret=wrong)
    gateway = start_gateway({**fake_env, "GATEWAY_CONFIG": config})
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="wrong_secret", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from openai"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert bedrock_fake.count == 1  # refused by the fake's botocore check: 403 InvalidSignatureException


def test_a_validation_exception_goes_back_to_the_caller_as_400(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider, fakes: Any
) -> None:
    bedrock_fake.push(Fail(400, "The model returned the following errors: prompt is too long"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="claude", messages=HELLO)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error == {
        "message": "ValidationException: The model returned the following errors: prompt is too long",
        "type": "invalid_request_error",
        "param": None,
        "code": "ValidationException",
    }
    assert fakes["openai"].count == 0


def test_an_exception_frame_mid_stream_ends_the_stream_with_an_error(
    gateway: GatewayServer, bedrock_fake: FakeProvider
) -> None:
    bedrock_fake.push(StreamError(2, message="Your request was throttled.", error_type="throttlingException"))
    body = {"model": "claude", "messages": HELLO, "stream": True}
    response, payloads = sse_payloads(gateway.base_url, body, headers={"x-api-key": create_key(gateway.base_url)})
    assert response.status_code == 200
    texts = [orjson.loads(p)["choices"][0]["delta"].get("content") for p in payloads[:-1] if p != b"[DONE]"]
    assert "".join(t or "" for t in texts) == "Hello from"
    error = orjson.loads(payloads[-1])["error"]
    assert "throttlingException: Your request was throttled." in error["message"]


def test_a_bedrock_api_key_is_sent_as_a_bearer_token_without_a_signature(
    gateway: GatewayServer, sdk: MakeSdk, bedrock_fake: FakeProvider
) -> None:
    completion = sdk(gateway).chat.completions.create(model="keyed", messages=HELLO)
    assert completion.choices[0].message.content == "Hello from bedrock"
    headers = bedrock_fake.chat_requests[0].headers
    assert headers["authorization"] == f"Bearer {bedrock_fake.api_key}"
    assert "x-amz-date" not in headers


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bedrock_fake: FakeProvider) -> Iterator[None]:
    """Temporary credentials in the environment (botocore's chain reads the process's), nothing else to find."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEMP_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bedrock_fake.api_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", session_token(bedrock_fake.api_key))
    yield


def test_credentials_from_the_environment_chain(
    aws_environment: None,
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    tmp_path: Path,
    bedrock_fake: FakeProvider,
    fakes: Any,
    sdk: MakeSdk,
) -> None:
    chain = {"type": "bedrock", "base_url": bedrock_fake.base_url, "region": REGION}
    gateway = start_gateway(
        {**fake_env, "GATEWAY_CONFIG": write_config(tmp_path, bedrock_fake, fakes["openai"], chain=chain)}
    )
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="chain", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from bedrock"
    headers = bedrock_fake.chat_requests[0].headers
    assert headers["x-amz-security-token"] == session_token(bedrock_fake.api_key)
    assert f"Credential={TEMP_ACCESS_KEY_ID}/" in headers["authorization"]
    assert "x-amz-security-token" in headers["authorization"]  # signed


def test_no_secret_leaks_in_relayed_errors(
    start_gateway: StartGateway,
    fake_env: dict[str, str],
    tmp_path: Path,
    bedrock_fake: FakeProvider,
    fakes: Any,
    sdk: MakeSdk,
) -> None:
    temporary = {
        "type": "bedrock", "base_url": bedrock_fake.base_url, "region": REGION,
        "aws_access_key_id": TEMP_ACCESS_KEY_ID, "aws_secret_access_key": bedrock_fake.api_key,
        "aws_session_token": session_token(bedrock_fake.api_key),
    }  # fmt: skip
    gateway = start_gateway(
        {**fake_env, "GATEWAY_CONFIG": write_config(tmp_path, bedrock_fake, fakes["openai"], temporary=temporary)}
    )
    secrets = [bedrock_fake.api_key, session_token(bedrock_fake.api_key), TEMP_ACCESS_KEY_ID]
    key = create_key(gateway.base_url)

    bedrock_fake.push(EchoHeaders(400))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="temporary", messages=HELLO)
    message = str(caught.value.body)
    assert "x-amz-security-token: ***" in message.lower() and "Signature=***" in message
    signature = re.search(r"Signature=([0-9a-f]{64})", bedrock_fake.chat_requests[0].headers["authorization"])
    assert signature is not None
    for secret in [*secrets, signature[1]]:
        assert secret not in message

    bedrock_fake.push(EchoHeaders(in_stream=True))
    body = {"model": "temporary", "messages": HELLO, "stream": True}
    _, payloads = sse_payloads(gateway.base_url, body, headers={"x-api-key": key})
    error = orjson.loads(payloads[-1])["error"]["message"]
    assert "Signature=***" in error
    signature = re.search(r"Signature=([0-9a-f]{64})", bedrock_fake.chat_requests[1].headers["authorization"])
    assert signature is not None
    for secret in [*secrets, signature[1]]:
        assert secret not in error

    bedrock_fake.push(EchoHeaders(400))
    keyed = sdk(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        keyed.chat.completions.create(model="keyed", messages=HELLO)
    assert "Bearer ***" in str(caught.value.body) and bedrock_fake.api_key not in str(caught.value.body)


# ------------------------------------------------------------- every behaviour, on the adapter itself


@pytest.fixture
async def adapter(bedrock_fake: FakeProvider) -> AsyncIterator[BedrockProvider]:
    config = ProviderConfig.model_validate(
        {"type": "bedrock", "base_url": bedrock_fake.base_url, "region": REGION,
         "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": bedrock_fake.api_key}
    )  # fmt: skip
    made = BedrockProvider("bedrock", config, UpstreamBounds(max_response_bytes=1 << 20, max_sse_line_bytes=4096))
    yield made
    await made.aclose()


async def drain(adapter: BedrockProvider, *, timeout: float = 5) -> str:
    stream = await adapter.chat_stream(
        {"messages": HELLO}, CLAUDE, timeout=timeout, deadline=asyncio.get_running_loop().time() + 30
    )
    try:
        chunks = [orjson.loads(payload) async for payload in stream]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finally:
        await stream.aclose()


async def test_every_behaviour_plays_on_the_fake_bedrock(adapter: BedrockProvider, bedrock_fake: FakeProvider) -> None:
    bedrock_fake.push(Delay(0.05, Reply("late")))
    assert await drain(adapter) == "late"
    bedrock_fake.push(Drop())
    with pytest.raises(ProviderUnreachable):
        await drain(adapter)
    bedrock_fake.push(FailMidStream(1))
    with pytest.raises(ProviderUnreachable):
        await drain(adapter)
    bedrock_fake.push(Stall(1, 2.0))
    with pytest.raises(ProviderTimeout):
        await drain(adapter, timeout=0.3)
    bedrock_fake.push(Raw(200, b"<html>oops</html>", "text/html"))
    with pytest.raises(ProviderProtocolError):
        await adapter.chat({"messages": HELLO}, CLAUDE, timeout=5)
    prelude = struct.pack(">II", 1 << 22, 0)  # a valid prelude announcing a 4 MiB frame: never whole in the bound
    stream = "application/vnd.amazon.eventstream"
    bedrock_fake.push(
        Flood(1 << 22, prefix=prelude + struct.pack(">I", zlib.crc32(prelude)), announce=False, content_type=stream)
    )
    with pytest.raises(UpstreamStreamError, match="too large"):
        await drain(adapter)
    bedrock_fake.push(Flood(1 << 22, announce=False, content_type=stream))  # not even a prelude: its CRC fails
    with pytest.raises(UpstreamStreamError, match="invalid stream event"):
        await drain(adapter)
    bedrock_fake.push(Flood(1 << 22))
    with pytest.raises(ProviderProtocolError, match="too large"):
        await adapter.chat({"messages": HELLO}, CLAUDE, timeout=5)

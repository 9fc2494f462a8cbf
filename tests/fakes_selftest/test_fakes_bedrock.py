"""The fake Bedrock runtime speaks the real wire: botocore's own ``bedrock-runtime`` client (as boto3 users call it)
signs, sends and parses Converse and ConverseStream against it, errors included; botocore's event-stream parser reads
every frame the fake writes; and a wrong signature, key or token is refused as AWS refuses it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import botocore.session
import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError

from tests.fakes import EchoHeaders, Fail, FailMidStream, FakeProvider, Reply, StreamError
from tests.fakes.bedrock_wire import (
    ACCESS_KEY_ID,
    REGION,
    TEMP_ACCESS_KEY_ID,
    event_frame,
    exception_frame,
    frame,
    session_token,
)

pytest_plugins = ["tests.fakes.fixtures"]

PROFILE = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
HELLO = [{"role": "user", "content": [{"text": "Say hello."}]}]
CALL = {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}


def client(fake: FakeProvider, *, key: str = ACCESS_KEY_ID, secret: str | None = None, token: str | None = None) -> Any:
    session = botocore.session.Session()
    return session.create_client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=fake.base_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret or fake.api_key,
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(autouse=True)
def _no_socket_left_open() -> Iterator[None]:
    """botocore's clients pool urllib3 sockets: a socket left open surfaces as a ResourceWarning here, in the test
    that left it, not at some later test's garbage collection."""
    yield
    gc.collect()


@pytest.fixture
def bedrock(bedrock_fake: FakeProvider) -> Iterator[Any]:
    made = client(bedrock_fake)
    yield made
    made.close()


def test_botocore_converses_with_the_fake(bedrock: Any, bedrock_fake: FakeProvider) -> None:
    bedrock_fake.push(Reply("Hi there", thinking="Let me think", cache_read_tokens=3, cache_creation_tokens=2))
    answer = bedrock.converse(modelId=PROFILE, messages=HELLO, inferenceConfig={"maxTokens": 20})
    assert answer["output"]["message"]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Let me think", "signature": "c2ln"}}},
        {"text": "Hi there"},
    ]
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"] == {
        "inputTokens": 11, "outputTokens": 7, "totalTokens": 23, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2,
    }  # fmt: skip
    assert bedrock_fake.chat_requests[0].path == f"/model/{PROFILE}/converse"
    assert bedrock_fake._wire.raw_paths[0].startswith("/model/arn%3Aaws%3Abedrock")  # type: ignore[attr-defined]


def test_botocore_reads_the_fakes_stream_of_text_and_tool_calls(bedrock: Any, bedrock_fake: FakeProvider) -> None:
    bedrock_fake.push(Reply("Checking.", tool_calls=[CALL], chunks=2))
    answer = bedrock.converse_stream(
        modelId="anthropic.claude-3-5-haiku-20241022-v1:0", messages=HELLO, toolConfig=TOOLS
    )
    with contextlib.closing(answer["stream"]) as stream:
        events = list(stream)
    names = [next(iter(event)) for event in events]
    assert names == [
        "messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "contentBlockStart",
        "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata",
    ]  # fmt: skip
    assert events[4]["contentBlockStart"] == {
        "contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
    }  # fmt: skip
    arguments = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events[5:7])
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert events[8]["messageStop"]["stopReason"] == "tool_use"
    assert events[9]["metadata"]["usage"] == {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "ThrottlingException"), (503, "ServiceUnavailableException"), (500, "InternalServerException"),
     (400, "ValidationException"), (403, "AccessDeniedException")],
)  # fmt: skip
def test_fail_renders_aws_exceptions_botocore_recognises(
    bedrock: Any, bedrock_fake: FakeProvider, status: int, kind: str
) -> None:
    bedrock_fake.push(Fail(status, "nope"))
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId="m", messages=HELLO)
    assert caught.value.response["Error"] == {"Code": kind, "Message": "nope"}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_a_stream_error_is_an_exception_frame_botocore_raises(bedrock: Any, bedrock_fake: FakeProvider) -> None:
    bedrock_fake.push(StreamError(1, message="slow down", error_type="throttlingException"))
    seen = []
    with (
        contextlib.closing(bedrock.converse_stream(modelId="m", messages=HELLO)["stream"]) as stream,
        pytest.raises(ClientError) as caught,
    ):
        for event in stream:
            seen.append(next(iter(event)))
    assert seen == ["messageStart", "contentBlockDelta"]
    assert caught.value.response["Error"] == {"Code": "throttlingException", "Message": "slow down"}


@pytest.mark.parametrize(
    ("options", "kind"),
    [({"secret": "wrong"}, "InvalidSignatureException"),
     ({"key": "AKIAUNKNOWN000000000"}, "UnrecognizedClientException"),
     ({"key": TEMP_ACCESS_KEY_ID, "token": "wrong-token"}, "UnrecognizedClientException"),
     ({"key": TEMP_ACCESS_KEY_ID}, "UnrecognizedClientException")],
)  # fmt: skip
def test_bad_credentials_are_refused_like_aws(bedrock_fake: FakeProvider, options: dict[str, str], kind: str) -> None:
    bad = client(bedrock_fake, **options)
    try:
        with pytest.raises(ClientError) as caught:
            bad.converse(modelId="m", messages=HELLO)
    finally:
        bad.close()
    assert caught.value.response["Error"]["Code"] == kind
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert bedrock_fake.count == 1


def test_temporary_credentials_with_their_token_are_accepted(bedrock_fake: FakeProvider) -> None:
    temporary = client(bedrock_fake, key=TEMP_ACCESS_KEY_ID, token=session_token(bedrock_fake.api_key))
    try:
        answer = temporary.converse(modelId="m", messages=HELLO)
    finally:
        temporary.close()
    assert answer["output"]["message"]["content"] == [{"text": "Hello from bedrock"}]


def signed(fake: FakeProvider, body: bytes, *, path: str = "/model/m/converse", tamper: bool = False) -> httpx.Response:
    url = f"{fake.base_url}{path}"
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(ACCESS_KEY_ID, fake.api_key), "bedrock", REGION).add_auth(request)
    return httpx.post(url, content=body + (b" " if tamper else b""), headers=dict(request.headers.items()))


def test_a_body_changed_after_signing_is_refused(bedrock_fake: FakeProvider) -> None:
    body = orjson.dumps({"messages": HELLO})
    assert signed(bedrock_fake, body).status_code == 200
    refused = signed(bedrock_fake, body, tamper=True)
    assert refused.status_code == 403
    assert refused.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")


def test_a_bearer_key_is_checked(bedrock_fake: FakeProvider) -> None:
    url, body = f"{bedrock_fake.base_url}/model/m/converse", {"messages": HELLO}
    good = httpx.post(url, json=body, headers={"Authorization": f"Bearer {bedrock_fake.api_key}"})
    bad = httpx.post(url, json=body, headers={"Authorization": "Bearer ABSKnope"})
    assert good.status_code == 200 and good.json()["output"]["message"]["content"] == [{"text": "Hello from bedrock"}]
    assert bad.status_code == 403 and bad.headers["x-amzn-errortype"].startswith("UnrecognizedClientException:")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}, "must start with a user message"),
        ({"messages": HELLO * 2}, "must alternate"),
        ({"messages": [{"role": "user", "content": [{"text": "  "}]}]}, "is blank"),
        ({"messages": HELLO, "model": "m"}, "extraneous key [model]"),
        ({"messages": HELLO, "inferenceConfig": {"temperature": 1.5}}, "inferenceConfig.temperature"),
        ({"messages": HELLO, "inferenceConfig": {"max_tokens": 5}}, "Malformed inferenceConfig"),
        (
            {
                "messages": [
                    *HELLO,
                    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]},
                ]
            },
            "toolConfig field must be defined",
        ),
        ({"messages": HELLO, "toolConfig": {**TOOLS, "toolChoice": {"tool": {"name": "other"}}}}, "toolChoice"),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}]}]},
            "format",
        ),
    ],
)
def test_invalid_converse_bodies_are_validation_exceptions(
    bedrock_fake: FakeProvider, body: dict[str, Any], message: str
) -> None:
    answer = signed(bedrock_fake, orjson.dumps(body))
    assert answer.status_code == 400, answer.text
    assert answer.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert message in answer.json()["message"]
    assert bedrock_fake.count == 1


def test_botocore_parses_the_fakes_frames() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(event_frame("messageStart", {"role": "assistant"}) + exception_frame("throttlingException", "x"))
    buffer.add_data(frame({":message-type": "event", ":event-type": "metadata"}, b"{}"))
    messages = list(buffer)
    assert [m.headers for m in messages] == [
        {":event-type": "messageStart", ":content-type": "application/json", ":message-type": "event"},
        {":exception-type": "throttlingException", ":content-type": "application/json", ":message-type": "exception"},
        {":message-type": "event", ":event-type": "metadata"},
    ]
    assert orjson.loads(messages[0].payload)["role"] == "assistant"
    assert orjson.loads(messages[1].payload) == {"message": "x"}


def test_fail_mid_stream_cuts_the_frames_and_echo_headers_repeats_them(
    bedrock: Any, bedrock_fake: FakeProvider
) -> None:
    bedrock_fake.push(FailMidStream(1))
    with pytest.raises(Exception):  # noqa: B017 - urllib3's cut body, as botocore sees a reset
        with contextlib.closing(bedrock.converse_stream(modelId="m", messages=HELLO)["stream"]) as stream:
            list(stream)
    bedrock_fake.push(EchoHeaders(400))
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId="m", messages=HELLO)
    assert "Signature=" in caught.value.response["Error"]["Message"]

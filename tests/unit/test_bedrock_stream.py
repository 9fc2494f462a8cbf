"""ConverseStream -> OpenAI chunks: the pure translator, and the client's frame decoding (botocore's parser, bounded,
exception frames) over a scripted body; credentials refreshed off the event loop and masked."""

from __future__ import annotations

import asyncio
import datetime
import threading
from typing import Any, cast

import orjson
import pytest
from botocore.credentials import RefreshableCredentials
from pydantic import SecretStr

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.http import UpstreamBounds, UpstreamResponse
from llm_gateway.providers.bedrock import client as client_module
from llm_gateway.providers.bedrock.auth import SigV4Signer
from llm_gateway.providers.bedrock.client import BedrockProvider, BedrockStream
from llm_gateway.providers.bedrock.stream import ConverseStreamTranslator
from llm_gateway.settings import ConfigError, ProviderConfig
from tests.fakes.bedrock_wire import event_frame, exception_frame, frame


def feed_all(translator: ConverseStreamTranslator, events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [chunk for name, data in events for chunk in translator.feed(name, data)]


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


TOOL_STREAM = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Looking."}}),
    ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "get_weather"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 2}),
    ("messageStop", {"stopReason": "tool_use"}),
    ("metadata", {"usage": {"inputTokens": 9, "outputTokens": 4, "cacheReadInputTokens": 2}, "metrics": {}}),
]


def test_reasoning_text_and_tool_calls_stream_as_openai_deltas() -> None:
    translator = ConverseStreamTranslator(model="m", created=1, include_usage=True)
    chunks = feed_all(translator, TOOL_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": None}, None),
        ({"reasoning_content": "Hmm"}, None),
        ({"content": "Looking."}, None),
        (
            {
                "tool_calls": [
                    {"index": 0, "id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    assert all(c["usage"] is None for c in chunks[:-1]) and len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 2},
    }  # fmt: skip
    assert translator.finished and translator.feed("contentBlockDelta", {"delta": {"text": "late"}}) == []


def test_text_first_opens_with_empty_content_and_the_json_tool_streams_as_content() -> None:
    translator = ConverseStreamTranslator(model="m", created=1, include_usage=False)
    events = [
        (
            "contentBlockStart",
            {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "j", "name": "json_response"}}},
        ),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"a":1}'}}}),
        ("contentBlockDelta", {"contentBlockIndex": 5, "delta": {"toolUse": {"input": "orphan"}}}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1}}),
    ]
    assert deltas(feed_all(translator, events)) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": '{"a":1}'}, None),
        ({}, "stop"),  # the JSON tool is the answer, not a tool call
    ]


def test_metadata_without_message_stop_still_finishes_and_the_usage_is_kept() -> None:
    translator = ConverseStreamTranslator(model="m", created=1, include_usage=False)
    chunks = feed_all(
        translator, [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}), ("metadata", {})]
    )
    assert deltas(chunks)[-1] == ({}, "stop") and translator.usage == {
        "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "prompt_tokens_details": {"cached_tokens": 0},
    }  # fmt: skip


@pytest.mark.parametrize("reason", ["max_tokens", "guardrail_intervened", "content_filtered", "end_turn"])
def test_stop_reasons(reason: str) -> None:
    translator = ConverseStreamTranslator(model="m", created=1, include_usage=False)
    chunks = translator.feed("messageStop", {"stopReason": reason})
    expected = {"max_tokens": "length", "end_turn": "stop"}.get(reason, "content_filter")
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None), ({}, expected)]


# ------------------------------------------------------------------------ frames, over a scripted body


class ScriptedBody:
    """What BedrockStream reads of an ``UpstreamResponse``: chunks, then the end."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.released = False
        self._next = 0

    async def next_chunk(self) -> bytes | None:
        if self._next == len(self.chunks):
            return None
        self._next += 1
        return self.chunks[self._next - 1]

    def release(self) -> None:
        self.released = True


def provider(max_frame: int = 1 << 20) -> BedrockProvider:
    config = ProviderConfig(type="bedrock", region="us-east-1", api_key=SecretStr("ABSK-secret"))
    return BedrockProvider("bedrock", config, UpstreamBounds(max_sse_line_bytes=max_frame))


async def read(chunks: list[bytes], *, max_frame: int = 1 << 20) -> tuple[list[dict[str, Any]], BedrockStream]:
    translator = ConverseStreamTranslator(model="m", created=1, include_usage=False)
    body = cast(UpstreamResponse, ScriptedBody(chunks))
    stream = BedrockStream(provider(max_frame), body, asyncio.get_running_loop().time() + 30, translator)
    out: list[dict[str, Any]] = []
    try:
        async for payload in stream:
            out.append(orjson.loads(payload))
    finally:
        await stream.aclose()
    return out, stream


def whole(text: str = "Hello") -> list[bytes]:
    return [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}),
        event_frame("messageStop", {"stopReason": "end_turn"}),
        event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2}}),
    ]


async def test_frames_cut_anywhere_decode_to_the_same_chunks() -> None:
    data = b"".join(whole())
    for size in (1, 7, 13, len(data)):
        out, stream = await read([data[i : i + size] for i in range(0, len(data), size)])
        assert [d for d, _ in deltas(out)] == [{"role": "assistant", "content": ""}, {"content": "Hello"}, {}]
        assert stream.usage is not None and stream.usage.prompt_tokens == 3


async def test_an_exception_frame_fails_the_stream_with_its_type_and_message_masked() -> None:
    frames = [*whole()[:2], exception_frame("throttlingException", "Bearer ABSK-secret was throttled")]
    with pytest.raises(UpstreamStreamError) as caught:
        await read(frames)
    assert caught.value.message == "bedrock stream failed: throttlingException: Bearer *** was throttled"
    error = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    with pytest.raises(UpstreamStreamError, match="InternalFailure: boom"):
        await read([error])


async def test_a_frame_past_the_bound_or_bytes_without_a_frame_fail_the_stream() -> None:
    big = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x" * 600}})
    with pytest.raises(UpstreamStreamError, match="too large"):
        await read([big], max_frame=512)
    with pytest.raises(UpstreamStreamError, match="too large"):
        await read([big[:300], big[300:520], big[520:]], max_frame=512)  # never whole within the bound


async def test_a_corrupt_frame_an_unknown_kind_and_an_early_end_are_errors() -> None:
    corrupt = bytearray(b"".join(whole()))
    corrupt[20] ^= 0xFF
    with pytest.raises(UpstreamStreamError, match="invalid stream event"):
        await read([bytes(corrupt)])
    with pytest.raises(UpstreamStreamError, match="invalid stream event"):
        await read([frame({":message-type": "event"}, b"{}")])
    with pytest.raises(UpstreamStreamError, match="before messageStop"):
        await read(whole()[:2])
    out, _ = await read(whole()[:3])  # messageStop without metadata: the answer is whole
    assert deltas(out)[-1] == ({}, "stop")


# ------------------------------------------------------------------------------------ credentials


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def refreshable(clock: Clock, refreshes: list[int]) -> RefreshableCredentials:
    def refresh() -> dict[str, str]:
        refreshes.append(threading.get_ident())
        expiry = clock.now + datetime.timedelta(hours=1)
        return {"access_key": f"ASIA{len(refreshes)}", "secret_key": f"secret-{len(refreshes)}",
                "token": f"token-{len(refreshes)}", "expiry_time": expiry.isoformat()}  # fmt: skip

    return RefreshableCredentials(
        "ASIA0", "secret-0", "token-0", clock.now + datetime.timedelta(hours=1), refresh, "test", time_fetcher=clock
    )


async def test_expiring_credentials_are_refreshed_in_a_thread_and_every_secret_stays_masked() -> None:
    clock, refreshes, masked = Clock(), [], []
    signer = SigV4Signer("bedrock", refreshable(clock, refreshes), "us-east-1", on_new_secrets=masked.append)
    first = await signer.current(5)
    assert first.credentials.secret_key == "secret-0" and refreshes == []
    clock.now += datetime.timedelta(minutes=47)  # 13 minutes left: refresh in the background, sign with these
    signer._next_check = 0.0
    assert (await signer.current(5)).credentials.secret_key == "secret-0"
    assert signer._refresh is not None
    await signer._refresh
    assert refreshes and refreshes[0] != threading.get_ident()  # not on the event loop's thread
    assert (await signer.current(5)).credentials.secret_key == "secret-1"
    clock.now += datetime.timedelta(minutes=55)  # 5 minutes left: this request waits for the refresh
    signer._next_check = 0.0
    assert (await signer.current(5)).credentials.token == "token-2"
    assert masked == [
        ["ASIA0", "secret-0", "token-0"],
        ["ASIA1", "secret-1", "token-1"],
        ["ASIA2", "secret-2", "token-2"],
    ]
    headers = signer.sign(await signer.current(5), "https://h/model/m/converse", {"Host": "h"}, b"{}")
    assert headers["X-Amz-Security-Token"] == "token-2" and "Credential=ASIA2/" in headers["Authorization"]


async def test_the_adapter_masks_refreshed_secrets_and_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, refreshes = Clock(), []
    monkeypatch.setattr(client_module, "resolve_credentials", lambda name, config: refreshable(clock, refreshes))
    adapter = BedrockProvider("bedrock", ProviderConfig(type="bedrock", region="us-east-1"))
    clock.now += datetime.timedelta(minutes=55)
    assert adapter._signer is not None
    await adapter._signer.current(5)
    text = "secret-0 token-0 secret-1 token-1 Signature=" + "ab" * 32
    assert adapter.mask(text) == "*** *** *** *** Signature=***"


def test_no_credentials_anywhere_is_a_config_error_naming_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match=r"providers\.bedrock: no AWS credentials found .*AWS_ACCESS_KEY_ID"):
        BedrockProvider("bedrock", ProviderConfig(type="bedrock", region="us-east-1"))
    with pytest.raises(ConfigError, match="ProfileNotFound"):
        BedrockProvider("bedrock", ProviderConfig(type="bedrock", region="us-east-1", aws_profile="nope"))
    shared = tmp_path / "credentials"
    shared.write_text("[work]\naws_access_key_id = AKIAWORK\naws_secret_access_key = work-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    adapter = BedrockProvider("bedrock", ProviderConfig(type="bedrock", region="us-east-1", aws_profile="work"))
    assert adapter._signer is not None and adapter._signer.frozen.access_key == "AKIAWORK"
    assert adapter.mask("work-secret") == "***"

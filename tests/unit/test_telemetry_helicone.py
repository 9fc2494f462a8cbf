"""Helicone's documented log payload, built from records (a streamed answer assembled as the cache does)."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.cache import chunks_to_completion
from llm_gateway.telemetry import AttemptRecord, RequestRecord
from llm_gateway.telemetry.helicone import HeliconeLogger, helicone_headers, helicone_log

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 50,
    "stream": True,
    "stream_options": {"include_usage": True},
}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "claude-3-5-haiku-20241022",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}


def record(**fields: Any) -> RequestRecord:
    rec = RequestRecord(
        request_id="req-1",
        route="/v1/chat/completions",
        model="gpt-4o-mini",
        start=10.0,
        start_ns=1_700_000_000_123_456_789,
        user_id="user-42",
        provider="anthropic",
        upstream_model="claude-3-5-haiku-latest",
        response_model="claude-3-5-haiku-20241022",
        attempts=[
            AttemptRecord("openai", "gpt-4o-mini", 10.0, 0.2, status=500, error="upstream_error"),
            AttemptRecord("anthropic", "claude-3-5-haiku-latest", 10.2, 0.3, status=200),
        ],
        stream=True,
        cache="miss",
        prompt_tokens=11,
        completion_tokens=7,
        duration=0.5015,
        ttft=0.2504,
        request_body=BODY,
        response_body=ANSWER,
    )
    for name, value in fields.items():
        setattr(rec, name, value)
    return rec


def test_payload_follows_the_documented_async_log_format() -> None:
    assert helicone_log(record()) == {
        "providerRequest": {
            "url": "custom-model-nopath",
            "json": {
                "model": "claude-3-5-haiku-latest",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 50,
                "stream": False,
            },
            "meta": {},
        },
        "providerResponse": {"headers": {}, "status": 200, "json": ANSWER},
        "timing": {
            "startTime": {"seconds": 1_700_000_000, "milliseconds": 123},
            "endTime": {"seconds": 1_700_000_000, "milliseconds": 624},
            "timeToFirstToken": 250,
        },
    }


def test_headers_carry_the_user_id_and_properties() -> None:
    assert helicone_headers(record()) == {
        "Helicone-User-Id": "user-42",
        "Helicone-Property-Request-Id": "req-1",
        "Helicone-Property-Model-Group": "gpt-4o-mini",
        "Helicone-Property-Provider": "anthropic",
        "Helicone-Property-Attempts": "2",
        "Helicone-Property-Stream": "true",
        "Helicone-Property-Cache": "miss",
    }
    assert helicone_headers(record(user_id="jürgen\n"))["Helicone-User-Id"] == "j%C3%BCrgen%0A"


def test_without_content_only_metadata_and_usage_leave() -> None:
    payload = helicone_log(record(), include_content=False)
    assert payload["providerRequest"]["json"] == {"model": "claude-3-5-haiku-latest", "max_tokens": 50, "stream": False}
    assert payload["providerResponse"]["json"] == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claude-3-5-haiku-20241022",
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        "choices": [{"index": 0, "finish_reason": "stop"}],
    }
    assert b"Say hello" not in orjson.dumps(payload) and b"Hello!" not in orjson.dumps(payload)


def test_usage_is_filled_in_and_failures_carry_their_status() -> None:
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]}
    response = helicone_log(record(response_body=answer, ttft=None))["providerResponse"]["json"]
    assert response["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert response["model"] == "claude-3-5-haiku-20241022"
    failed = helicone_log(
        record(
            status=502,
            error="all_providers_failed",
            response_body=None,
            prompt_tokens=None,
            completion_tokens=None,
            response_model=None,
        )
    )
    assert failed["providerResponse"] == {
        "headers": {},
        "status": 502,
        "json": {"error": {"code": "all_providers_failed", "status": 502}, "model": "claude-3-5-haiku-latest"},
    }


def test_submit_drops_and_counts_when_the_queue_is_full() -> None:
    logger = HeliconeLogger("key", "http://127.0.0.1:9", queue_size=3)
    results = [logger.submit(record()) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert logger.depth == 3 and logger.dropped == {"queue_full": 2}


def chunk(**fields: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m", **fields}


def test_a_streamed_answer_is_logged_whole() -> None:
    """The pipeline assembles a stream with the cache's ``chunks_to_completion``; Helicone gets that answer."""
    chunks = [
        chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]),
        chunk(choices=[{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]),
        chunk(
            choices=[
                {
                    "index": 1,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"ci'},
                            }
                        ]
                    },
                }
            ]
        ),
        chunk(choices=[{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": 1}'}}]}}]),
        chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        chunk(choices=[{"index": 1, "delta": {}, "finish_reason": "tool_calls"}]),
        chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
    ]
    payload = helicone_log(record(response_body=chunks_to_completion(chunks)))
    assert payload["providerRequest"]["json"]["stream"] is False
    assert payload["providerResponse"]["json"] == {
        "object": "chat.completion",
        "id": "chatcmpl-s",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": 1}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }

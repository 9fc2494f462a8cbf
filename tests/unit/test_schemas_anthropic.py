"""The Messages request check, the Anthropic error envelope (checked through the Anthropic SDK's own error
mapping) and the models list shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.pagination import SyncPage
from anthropic.types import ModelInfo
from anthropic.types.shared import ErrorResponse

from llm_gateway.errors import (
    AllProvidersFailed,
    AllProvidersRefused,
    Attempt,
    AuthenticationFailed,
    FrameworkError,
    GatewayError,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderRejected,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedFeature,
    UnsupportedMediaType,
)
from llm_gateway.schemas.anthropic import (
    MessagesRequest,
    error_body,
    error_event,
    error_type,
    model_entry,
    models_list,
    parse_count_tokens_request,
    parse_messages_request,
)
from llm_gateway.schemas.sse_frames import split_frame

WEATHER_TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
FULL_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 4096,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Call the tool.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Rain", "is_error": True},
        ]},
    ],
    "tools": [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "stop_sequences": ["END"],
    "temperature": 1,
    "top_p": 0.9,
    "top_k": 5,
    "metadata": {"user_id": "u-1"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "stream": True,
    "service_tier": "auto",
}  # fmt: skip


def body(**fields: Any) -> bytes:
    base = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    return orjson.dumps({k: v for k, v in {**base, **fields}.items() if v is not ...})


def test_a_full_request_is_accepted_untouched() -> None:
    request = parse_messages_request(orjson.dumps(FULL_BODY))
    assert request == MessagesRequest(body=FULL_BODY, model="claude-sonnet-4-5", stream=True, max_tokens=4096)
    assert parse_messages_request(body()) == MessagesRequest(
        body=orjson.loads(body()), model="claude-haiku-4-5", stream=False, max_tokens=100
    )


def test_count_tokens_takes_neither_max_tokens_nor_stream() -> None:
    count_body = {k: v for k, v in FULL_BODY.items() if k not in ("max_tokens", "stream")}
    assert parse_count_tokens_request(orjson.dumps(count_body)) == count_body
    with pytest.raises(InvalidRequest) as caught:
        parse_count_tokens_request(orjson.dumps({"model": "m", "messages": []}))
    assert caught.value.param == "messages"


def test_thinking_types_other_than_enabled_need_no_budget() -> None:
    for thinking in ({"type": "disabled"}, {"type": "adaptive"}, {"type": "enabled", "budget_tokens": 64000}):
        parse_messages_request(body(thinking=thinking, max_tokens=1))  # the budget is not held below max_tokens


INVALID: list[tuple[bytes, str | None]] = [
    (b"{", None),
    (b"[1]", None),
    (b"{" * 70 + b"}" * 70, None),
    (body(metadata=...)[:-1] + b',"metadata":{"a":' + b"[" * 63 + b"]" * 63 + b"}}", "metadata"),  # 65 deep
    (body(model=...), "model"),
    (body(model=""), "model"),
    (body(max_tokens=...), "max_tokens"),
    (body(max_tokens=0), "max_tokens"),
    (body(max_tokens=1.5), "max_tokens"),
    (body(max_tokens=True), "max_tokens"),
    (body(stream="yes"), "stream"),
    (body(messages=[]), "messages"),
    (body(messages={"role": "user"}), "messages"),
    (body(messages=["hi"]), "messages[0]"),
    (body(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
    (body(messages=[{"role": "user"}]), "messages[0].content"),
    (body(messages=[{"role": "user", "content": 3}]), "messages[0].content"),
    (body(messages=[{"role": "user", "content": [{"text": "x"}]}]), "messages[0].content[0]"),
    (body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]), "messages[0].content[0].text"),
    (body(messages=[{"role": "user", "content": [{"type": "image", "source": "u"}]}]),
     "messages[0].content[0].source"),
    (body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]),
     "messages[0].content[0].id"),
    (body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}]),
     "messages[0].content[0].name"),
    (body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]),
     "messages[0].content[0].input"),
    (body(messages=[{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
     "messages[0].content[0].tool_use_id"),
    (body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]}]),
     "messages[0].content[0].content"),
    (body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                  "content": [{"type": "text"}]}]}]),
     "messages[0].content[0].content[0].text"),
    (body(system=5), "system"),
    (body(system=[{"type": "image", "source": {}}]), "system[0]"),
    (body(system=[{"type": "text"}]), "system[0]"),
    (body(tools={}), "tools"),
    (body(tools=["t"]), "tools[0]"),
    (body(tools=[{"input_schema": {}}]), "tools[0].name"),
    (body(tools=[{"name": "f"}]), "tools[0].input_schema"),
    (body(tools=[{"type": "custom", "name": "f", "input_schema": "{}"}]), "tools[0].input_schema"),
    (body(tools=[{"type": 3, "name": "f"}]), "tools[0].type"),
    (body(tools=[{"type": "web_search_20250305"}]), "tools[0].name"),
    (body(tool_choice="auto"), "tool_choice"),
    (body(tool_choice={"type": "tool"}), "tool_choice.name"),
    (body(stop_sequences="END"), "stop_sequences"),
    (body(stop_sequences=["a", 1]), "stop_sequences[1]"),
    (body(temperature="1"), "temperature"),
    (body(top_p=True), "top_p"),
    (body(top_k=1.5), "top_k"),
    (body(metadata="u"), "metadata"),
    (body(metadata={"user_id": 7}), "metadata.user_id"),
    (body(thinking=True), "thinking"),
    (body(thinking={"budget_tokens": 2048}), "thinking"),
    (body(thinking={"type": "enabled"}), "thinking.budget_tokens"),
    (body(thinking={"type": "enabled", "budget_tokens": 1023}), "thinking.budget_tokens"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "param"), INVALID)
def test_what_the_gateway_reads_is_checked(raw: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_messages_request(raw)
    assert type(caught.value) is InvalidRequest
    assert caught.value.param == param
    assert caught.value.status_code == 400


def test_unknown_fields_and_block_types_pass() -> None:
    raw = body(messages=[{"role": "user", "content": [{"type": "container_upload", "file_id": 5}, {"type": "x"}]}],
               tools=[{"type": "bash_20250124", "name": "bash"}], betas=["x"], future={"a": 1})  # fmt: skip
    assert parse_messages_request(raw).body == orjson.loads(raw)


# --- Errors ----------------------------------------------------------------------------------------


def attempt(status: int) -> Attempt:
    return Attempt(provider="anthropic", model="claude", status=status, error="")


ERRORS: list[tuple[GatewayError, int, str, type[anthropic.APIStatusError]]] = [
    (InvalidRequest("bad"), 400, "invalid_request_error", anthropic.BadRequestError),
    (UnsupportedFeature("Server tools"), 400, "invalid_request_error", anthropic.BadRequestError),
    (AuthenticationFailed("no key"), 401, "authentication_error", anthropic.AuthenticationError),
    (PermissionDenied("not yours"), 403, "permission_error", anthropic.PermissionDeniedError),
    (ModelNotFound("nope"), 404, "not_found_error", anthropic.NotFoundError),
    (FrameworkError("Not Found", status=404), 404, "not_found_error", anthropic.NotFoundError),
    (FrameworkError("Method Not Allowed", status=405), 405, "invalid_request_error", anthropic.APIStatusError),
    (RequestTooLarge("too big"), 413, "request_too_large", anthropic.RequestTooLargeError),
    (UnsupportedMediaType("json only"), 415, "invalid_request_error", anthropic.APIStatusError),
    (RateLimited("slow down", retry_after_seconds=3), 429, "rate_limit_error", anthropic.RateLimitError),
    (QuotaExceeded("budget", retry_after_seconds=3), 429, "rate_limit_error", anthropic.RateLimitError),
    (AllProvidersRefused("g", [attempt(429)]), 429, "rate_limit_error", anthropic.RateLimitError),
    (AllProvidersRefused("g", [attempt(429), attempt(529)]), 529, "overloaded_error", anthropic.OverloadedError),
    (InternalError(), 500, "api_error", anthropic.InternalServerError),
    (AllProvidersFailed("g", [attempt(500)]), 502, "api_error", anthropic.InternalServerError),
    (ServiceUnavailable("redis down"), 503, "api_error", anthropic.ServiceUnavailableError),
    (ProviderTimeout("slow"), 504, "api_error", anthropic.GatewayTimeoutError),
    (AllProvidersFailed("g", [], timed_out=True), 504, "api_error", anthropic.GatewayTimeoutError),
    (ProviderRejected("ctx", provider="a", upstream_status=422), 422, "invalid_request_error",
     anthropic.UnprocessableEntityError),
]  # fmt: skip


def sdk_error(status: int, content: bytes) -> anthropic.APIStatusError:
    """What the Anthropic SDK raises for this answer to ``messages.create``."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=content, headers={"content-type": "application/json"})

    transport = httpx2.MockTransport(answer)
    with anthropic.Anthropic(
        api_key="k", base_url="http://gateway", max_retries=0, http_client=httpx2.Client(transport=transport)
    ) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    return caught.value


@pytest.mark.parametrize(("exc", "status", "kind", "sdk_class"), ERRORS)
def test_errors_in_anthropics_envelope(
    exc: GatewayError, status: int, kind: str, sdk_class: type[anthropic.APIStatusError]
) -> None:
    assert error_type(exc) == (status, kind)
    envelope = orjson.loads(error_body(exc))
    assert envelope == {"type": "error", "error": {"type": kind, "message": exc.message}}
    if kind != "request_too_large":  # documented by Anthropic, not (yet) in the SDK's ErrorResponse union
        assert ErrorResponse.model_validate(envelope).error.type == kind
    raised = sdk_error(status, error_body(exc, request_id="req_1"))
    assert type(raised) is sdk_class
    assert (raised.status_code, raised.type, raised.api_message) == (status, kind, exc.message)
    assert "request_id: req_1" in str(raised)


def test_error_event_ends_a_stream() -> None:
    exc = AllProvidersRefused("g", [attempt(529)])
    framed = error_event(exc, request_id="req_9")
    assert framed.endswith(b"\n\n")
    event, data = split_frame(framed)
    assert event == "error"
    assert orjson.loads(data) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": exc.message},
        "request_id": "req_9",
    }
    assert ErrorResponse.model_validate_json(data).error.type == "overloaded_error"


# --- Models ----------------------------------------------------------------------------------------


def test_models_list_in_anthropics_shape() -> None:
    created = datetime(2025, 2, 19, 12, 30, 5, 123, tzinfo=UTC)
    listed = models_list(["claude-fast", "claude-smart"], created)
    assert listed == {
        "data": [
            {"type": "model", "id": "claude-fast", "display_name": "claude-fast",
             "created_at": "2025-02-19T12:30:05Z", "lifecycle": "active"},
            {"type": "model", "id": "claude-smart", "display_name": "claude-smart",
             "created_at": "2025-02-19T12:30:05Z", "lifecycle": "active"},
        ],
        "has_more": False,
        "first_id": "claude-fast",
        "last_id": "claude-smart",
    }  # fmt: skip
    page = SyncPage[ModelInfo].model_validate(listed)
    assert [model.id for model in page.data] == ["claude-fast", "claude-smart"]
    assert page.data[0].created_at == created.replace(microsecond=0)
    assert models_list([], created) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_model_entry_times_are_utc() -> None:
    paris = timezone(timedelta(hours=2))
    assert model_entry("m", datetime(2025, 6, 1, 14, 0, tzinfo=paris))["created_at"] == "2025-06-01T12:00:00Z"
    assert model_entry("m", datetime(2025, 6, 1, 14, 0))["created_at"] == "2025-06-01T14:00:00Z"  # naive: UTC
    assert ModelInfo.model_validate(model_entry("m", datetime(2025, 6, 1, tzinfo=UTC))).display_name == "m"

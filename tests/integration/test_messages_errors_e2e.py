"""``POST /v1/messages`` refusals and failures as the Anthropic SDK sees them (each its own exception class, each
in Anthropic's envelope), a stream cut after its first content, and ``POST /v1/messages/count_tokens``.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import StartGateway
from tests.fakes import Fail, FakeProvider, StreamError
from tests.fakes.anthropic_wire import count_tokens
from tests.harness import GatewayServer
from tests.identity_support import create_key
from tests.limits_support import wait_for
from tests.messages_support import CLAUDE, MakeAnthropic, sse_events, user_turn

pytestmark = pytest.mark.integration


def envelope(error: anthropic.APIStatusError) -> tuple[int, str, str]:
    """(status, error type, message) of an error the SDK raised, after checking the envelope's shape."""
    body = orjson.loads(error.response.content)
    assert set(body) <= {"type", "error", "request_id"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert error.response.headers["content-type"] == "application/json"
    return error.status_code, body["error"]["type"], body["error"]["message"]


def raw_error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    return response.status_code, body["error"]["type"]


# -- refusals by the gateway ---------------------------------------------------------------------------------


def test_a_wrong_key_is_an_authentication_error(gateway: GatewayServer, claude: MakeAnthropic) -> None:
    client = claude(gateway, "gw-not-a-real-key")
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(**user_turn())
    assert envelope(caught.value)[:2] == (401, "authentication_error")
    assert caught.value.response.headers["request-id"] == caught.value.response.headers["x-request-id"]
    assert orjson.loads(caught.value.response.content)["request_id"] == caught.value.response.headers["request-id"]
    with pytest.raises(anthropic.AuthenticationError):  # counting needs an identity too
        client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])


def test_a_key_restricted_to_other_models_is_a_permission_error(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    client = claude(gateway, create_key(gateway.base_url, models=["gpt-4o-mini"]))
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(**user_turn())
    assert envelope(caught.value) == (403, "permission_error", f"This API key may not use the model '{CLAUDE}'.")
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert fakes["anthropic"].requests == []


def test_an_unknown_model_is_not_found(gateway: GatewayServer, claude: MakeAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(gateway, create_key(gateway.base_url)).messages.create(**user_turn(model="no-such-model"))
    assert envelope(caught.value)[:2] == (404, "not_found_error")


def test_a_bad_body_is_an_invalid_request(gateway: GatewayServer, claude: MakeAnthropic) -> None:
    key = create_key(gateway.base_url)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(gateway, key).messages.create(**user_turn(max_tokens=0))
    assert envelope(caught.value) == (
        400,
        "invalid_request_error",
        "'max_tokens' is required: an integer of at least 1.",
    )
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]}  # no max_tokens: the SDK insists
    missing = httpx.post(f"{gateway.base_url}/v1/messages", json=body, headers={"x-api-key": key})
    assert raw_error(missing) == (400, "invalid_request_error")


def test_a_body_over_max_request_bytes_is_request_too_large(
    start_gateway: StartGateway, fake_env: dict[str, str], claude: MakeAnthropic
) -> None:
    gateway = start_gateway({**fake_env, "MAX_REQUEST_BYTES": "2048"})
    with pytest.raises(anthropic.RequestTooLargeError) as caught:
        claude(gateway, create_key(gateway.base_url)).messages.create(**user_turn("x" * 4096))
    assert envelope(caught.value)[:2] == (413, "request_too_large")


def test_a_body_that_is_not_json_and_a_wrong_method_answer_in_anthropics_envelope(gateway: GatewayServer) -> None:
    key = create_key(gateway.base_url)
    url = f"{gateway.base_url}/v1/messages"
    plain = httpx.post(url, content=b"hello", headers={"x-api-key": key, "content-type": "text/plain"})
    assert raw_error(plain) == (415, "invalid_request_error")
    got = httpx.get(url, headers={"x-api-key": key})
    assert raw_error(got) == (405, "invalid_request_error")
    unknown = httpx.post(f"{url}/nowhere", json={}, headers={"x-api-key": key})
    assert raw_error(unknown) == (404, "not_found_error")


def test_the_request_rate_is_a_rate_limit_error_with_retry_after(gateway: GatewayServer, claude: MakeAnthropic) -> None:
    client = claude(gateway, create_key(gateway.base_url, rate_limit_per_minute=1))
    client.messages.create(**user_turn())
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**user_turn("Again."))
    assert envelope(caught.value)[:2] == (429, "rate_limit_error")
    assert int(caught.value.response.headers["retry-after"]) >= 1


# -- every upstream refused or failed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviours", "raised", "status", "kind", "retry_after"),
    [
        pytest.param(
            {"openai": Fail(429, headers={"retry-after": "9"}), "anthropic": Fail(429, headers={"retry-after": "4"}),
             "groq": Fail(429)},
            anthropic.RateLimitError, 429, "rate_limit_error", "4", id="all-rate-limited",
        ),
        pytest.param(
            {"openai": Fail(429), "anthropic": Fail(529), "groq": Fail(429)},
            anthropic.OverloadedError, 529, "overloaded_error", None, id="refused-one-overloaded",
        ),
        pytest.param(
            {"openai": Fail(500), "anthropic": Fail(500), "groq": Fail(503)},
            anthropic.InternalServerError, 502, "api_error", None, id="all-failed",
        ),
    ],
)  # fmt: skip
def test_when_every_upstream_refuses_or_fails_the_sdk_raises_its_own_class(
    gateway: GatewayServer,
    fakes: dict[str, FakeProvider],
    claude: MakeAnthropic,
    behaviours: dict[str, Fail],
    raised: type[anthropic.APIStatusError],
    status: int,
    kind: str,
    retry_after: str | None,
) -> None:
    """429 with the smallest Retry-After among the refusals; 529 when one of them was overloaded; else 502."""
    for name, behaviour in behaviours.items():
        fakes[name].push(behaviour)
    with pytest.raises(raised) as caught:
        claude(gateway, create_key(gateway.base_url)).messages.create(**user_turn(model="gpt-4o-mini"))
    assert type(caught.value) is raised
    _, got_kind, message = envelope(caught.value)
    assert (caught.value.status_code, got_kind) == (status, kind)
    assert caught.value.response.headers.get("retry-after") == retry_after
    assert all(fake.api_key not in message for fake in fakes.values())
    assert all(len(fake.chat_requests) == 1 for fake in fakes.values())


def test_a_stream_failing_after_content_ends_with_an_error_event_and_no_message_stop(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    key = create_key(gateway.base_url)
    fakes["anthropic"].push(StreamError(1, message="Overloaded mid-stream"), StreamError(1))
    response, events = sse_events(gateway.base_url, user_turn("one two three", stream=True), key=key)
    assert response.status_code == 200
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "overloaded_error: Overloaded mid-stream"},
    }

    with pytest.raises(anthropic.APIStatusError), claude(gateway, key).messages.stream(**user_turn("Again.")) as stream:
        for _ in stream.text_stream:
            pass


# -- count_tokens --------------------------------------------------------------------------------------------

COUNTED = {"messages": [{"role": "user", "content": "How many tokens is this?"}], "system": "Be brief."}


def test_count_tokens_asks_the_anthropic_deployment(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    client = claude(gateway, create_key(gateway.base_url))
    counted = client.messages.count_tokens(model=CLAUDE, **COUNTED)
    (sent,) = fakes["anthropic"].count_tokens_requests
    assert sent.body == {"model": CLAUDE, **COUNTED} and "max_tokens" not in sent.body
    assert counted.input_tokens == count_tokens(sent.body)

    routed = client.messages.count_tokens(model="gpt-4o-mini", **COUNTED)  # anthropic is second in the chain
    second = fakes["anthropic"].count_tokens_requests[1]
    assert second.body == {"model": "claude-3-5-haiku-latest", **COUNTED}
    assert routed.input_tokens == count_tokens(second.body)
    assert fakes["anthropic"].count == 0 and fakes["openai"].requests == []


def test_count_tokens_without_an_anthropic_deployment_is_the_gateways_estimate(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], claude: MakeAnthropic
) -> None:
    client = claude(gateway, create_key(gateway.base_url))
    counted = client.messages.count_tokens(model="groq/llama-3.1-8b-instant", **COUNTED)
    assert counted.input_tokens > 0
    assert all(fake.requests == [] for fake in fakes.values())


def test_count_tokens_charges_nothing_and_is_not_a_request_toward_the_rate(
    gateway: GatewayServer, claude: MakeAnthropic
) -> None:
    key = create_key(gateway.base_url, "rita", rate_limit_per_minute=1)
    client = claude(gateway, key)
    for _ in range(3):
        assert client.messages.count_tokens(model=CLAUDE, **COUNTED).input_tokens > 0
    client.messages.create(**user_turn())
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**user_turn("Again."))
    assert client.messages.count_tokens(model=CLAUDE, **COUNTED).input_tokens > 0  # the rate spent, counting goes on

    def usage() -> dict[str, Any] | None:
        report: dict[str, Any] = httpx.get(f"{gateway.base_url}/v1/usage", headers={"x-api-key": key}).json()
        return report if report["requests"] >= 1 else None

    report = wait_for(usage, what="the message's ledger row")
    assert report["requests"] == 1 and report["used_tokens"] == 11 + 7

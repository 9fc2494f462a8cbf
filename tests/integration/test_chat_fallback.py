"""End to end through the official ``openai`` SDK: the gateway on a real socket, fakes behind it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes import CHAT_GROUPS, EMBEDDING_GROUPS, Delay, Drop, Fail, FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import create_key

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """An SDK client holds its socket until closed; left to the GC it surfaces later as a ResourceWarning."""
    yield
    while _opened:
        _opened.pop().close()


def client(gateway: GatewayServer) -> openai.OpenAI:
    made = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=create_key(gateway.base_url), max_retries=0, timeout=20
    )
    _opened.append(made)
    return made


def test_openai_answers_first(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content == "Hello from openai"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 18
    assert raw.headers["x-gateway-provider"] == "openai"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert raw.headers["x-request-id"]
    sent = fakes["openai"].chat_requests[0]
    # The caller's body, with the completion cap the gateway reserved (the default allowance): always sent.
    assert sent.body == {"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": 4096}
    assert sent.headers["authorization"] == f"Bearer {fakes['openai'].api_key}"
    assert fakes["anthropic"].count == 0 and fakes["groq"].count == 0


def test_openai_500_falls_back_to_anthropic_in_openai_format(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    fakes["openai"].push(Fail(500))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, temperature=0.2
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from anthropic"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)  # type: ignore[union-attr]
    assert raw.headers["x-gateway-provider"] == "anthropic"
    assert raw.headers["x-gateway-attempts"] == "2"
    sent = fakes["anthropic"].chat_requests[0]
    assert sent.headers["x-api-key"] == fakes["anthropic"].api_key
    assert sent.body == {
        "model": "claude-3-5-haiku-latest",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        "max_tokens": 50,
        "temperature": 0.2,
    }


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_parameters_a_fallback_cannot_honour_are_named_never_dropped_silently(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    fakes["openai"].push(Fail(500))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, temperature=1.7, seed=7, stream=stream
    )
    if stream:
        assert "Hello from anthropic" in "".join(
            chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices
        )
    assert raw.headers["x-gateway-provider"] == "anthropic"
    assert raw.headers["x-gateway-dropped-params"] == "seed,temperature"  # seed unsupported, 1.7 clamped to 1
    assert fakes["anthropic"].chat_requests[0].body["temperature"] == 1

    answered = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, seed=7, stream=stream
    )
    assert answered.headers["x-gateway-provider"] == "openai"
    assert "x-gateway-dropped-params" not in answered.headers  # a passthrough honours every parameter


def test_429_and_529_fall_back_to_groq(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].push(Fail(429))
    fakes["anthropic"].push(Fail(529))
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)

    assert raw.parse().choices[0].message.content == "Hello from groq"
    assert raw.headers["x-gateway-provider"] == "groq"
    assert raw.headers["x-gateway-attempts"] == "3"
    assert fakes["groq"].chat_requests[0].body["model"] == "llama-3.1-8b-instant"


def test_every_provider_down_is_502_without_secrets(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].push(Fail(503))
    fakes["anthropic"].push(Drop())
    fakes["groq"].push(Fail(401, "Incorrect API key provided: " + fakes["groq"].api_key))
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}, timeout=20
    )

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "all_providers_failed"
    assert [(a["provider"], a["status"]) for a in error["attempts"]] == [
        ("openai", 503),
        ("anthropic", None),
        ("groq", 401),
    ]
    for fake in fakes.values():
        assert fake.api_key not in response.text


def refuse(fakes: dict[str, FakeProvider], *statuses: int, retry_after: tuple[str, ...] = ()) -> None:
    """The deployments of ``gpt-4o-mini`` (openai, anthropic, groq) refuse in turn, with these Retry-After."""
    for index, (name, status) in enumerate(zip(("openai", "anthropic", "groq"), statuses, strict=True)):
        wait = retry_after[index] if index < len(retry_after) else None
        fakes[name].push(Fail(status, headers={"retry-after": wait} if wait else None))


def rate_limited(gateway: GatewayServer, *, stream: bool = False) -> openai.RateLimitError:
    """What the SDK (``max_retries=0``) raises for a chat request refused with 429."""
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
    assert isinstance(caught.value.body, dict)
    return caught.value


def test_every_provider_refusing_for_rate_is_429_not_502(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    refuse(fakes, 429, 429, 429, retry_after=("7", "30", "12"))
    refused = rate_limited(gateway)

    assert (refused.status_code, refused.type, refused.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    assert [(a["provider"], a["status"]) for a in refused.body["attempts"]] == [
        ("openai", 429),
        ("anthropic", 429),
        ("groq", 429),
    ]
    assert all(fake.count == 1 for fake in fakes.values())


def test_the_429_carries_the_smallest_upstream_retry_after(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    refuse(fakes, 429, 429, 429, retry_after=("7", "30", "12"))
    assert rate_limited(gateway).response.headers.get("retry-after") == "7"


def test_a_stream_refused_for_rate_and_overload_everywhere_is_429_too(
    gateway: GatewayServer, fakes: dict[str, FakeProvider]
) -> None:
    refuse(fakes, 429, 529, 429)  # overload counts as a refusal; the OpenAI route still says 429
    refused = rate_limited(gateway, stream=True)

    assert refused.code == "rate_limit_exceeded"
    assert [a["status"] for a in refused.body["attempts"]] == [429, 529, 429]
    assert "retry-after" not in refused.response.headers  # none of the refusals carried one


def test_a_refusal_mixed_with_an_outage_stays_502(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    refuse(fakes, 429, 500, 529, retry_after=("7",))
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (502, "all_providers_failed")
    assert "retry-after" not in caught.value.response.headers


def test_upstream_400_is_returned_without_fallback(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].push(
        Fail(400, "This model's maximum context length is 128000 tokens.", code="context_length_exceeded")
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }
    assert fakes["anthropic"].count == 0 and fakes["groq"].count == 0


def test_unknown_model_is_404(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert sum(fake.count for fake in fakes.values()) == 0


def test_slow_upstream_times_out_and_falls_back(
    start_gateway: object, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "UPSTREAM_TIMEOUT_SECONDS": "0.5"})  # type: ignore[operator]
    fakes["openai"].push(Delay(3.0))
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-gateway-provider"] == "anthropic"
    assert raw.elapsed.total_seconds() < 2.5


def test_request_timeout_bounds_the_whole_request(
    start_gateway: object, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "REQUEST_TIMEOUT_SECONDS": "0.5"})  # type: ignore[operator]
    fakes["openai"].push(Delay(3.0))
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}, timeout=20
    )
    assert response.status_code == 504
    assert response.elapsed.total_seconds() < 2.0
    assert fakes["anthropic"].count == 0


def test_failing_deployment_is_cooled_down(
    start_gateway: object, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    gateway = start_gateway({**fake_env, "COOLDOWN_FAILURES": "2", "COOLDOWN_SECONDS": "60"})  # type: ignore[operator]
    fakes["openai"].set_default(Fail(500))
    for _ in range(4):
        raw = client(gateway).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Cache-Control": "no-store"}
        )
        assert raw.headers["x-gateway-provider"] == "anthropic"
    assert fakes["openai"].count == 2  # skipped once cooled down
    assert fakes["anthropic"].count == 4


def test_provider_without_key_is_skipped(
    start_gateway: object, fake_env: dict[str, str], fakes: dict[str, FakeProvider]
) -> None:
    env = {k: v for k, v in fake_env.items() if k != "OPENAI_API_KEY"}
    gateway = start_gateway(env)  # type: ignore[operator]
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-gateway-provider"] == "anthropic"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert fakes["openai"].count == 0


@pytest.mark.parametrize(
    ("model", "provider", "upstream_model"),
    [
        ("anthropic/claude-3-7-sonnet-latest", "anthropic", "claude-3-7-sonnet-latest"),
        ("claude-3-5-haiku-latest", "anthropic", "claude-3-5-haiku-latest"),
        ("groq/llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile"),
        ("llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
        ("openai/gpt-4.1-nano", "openai", "gpt-4.1-nano"),
    ],
)
def test_direct_routing(
    gateway: GatewayServer, fakes: dict[str, FakeProvider], model: str, provider: str, upstream_model: str
) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    assert raw.parse().choices[0].message.content == f"Hello from {provider}"
    assert fakes[provider].chat_requests[0].body["model"] == upstream_model


def test_models_lists_groups(gateway: GatewayServer) -> None:
    models = client(gateway).models.list()
    assert [m.id for m in models.data] == [*CHAT_GROUPS, *EMBEDDING_GROUPS]
    assert all(m.owned_by == "llm-gateway" for m in models.data)


def test_unknown_fields_pass_through_to_openai(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        seed=7,
        logprobs=True,
        extra_body={"reasoning_effort": "low", "vendor_field": {"a": [1, 2]}},
    )
    body = fakes["openai"].chat_requests[0].body
    assert body["seed"] == 7 and body["logprobs"] is True
    assert body["reasoning_effort"] == "low" and body["vendor_field"] == {"a": [1, 2]}


def test_request_id_is_echoed(gateway: GatewayServer) -> None:
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"x-request-id": "trace-123"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
    )
    assert response.headers["x-request-id"] == "trace-123"
    unsafe = httpx.get(f"{gateway.base_url}/health", headers={"x-request-id": "bad id <script>"})
    assert len(unsafe.headers["x-request-id"]) == 32  # replaced by a generated id


def test_no_prefix_route_works_too(gateway: GatewayServer) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from openai"
    key = {"x-api-key": create_key(gateway.base_url)}  # listing models needs a key or JWT
    assert httpx.get(f"{gateway.base_url}/models", headers=key).json()["object"] == "list"


def test_reply_with_reply_behaviour_counts(gateway: GatewayServer, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].push(Reply("custom answer", prompt_tokens=3, completion_tokens=2))
    completion = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == "custom answer"
    assert completion.usage is not None and completion.usage.total_tokens == 5

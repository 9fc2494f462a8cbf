"""The router's decisions, with in-memory providers: order, fallback rules, cooldowns, direct names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from llm_gateway.errors import (
    AllProvidersFailed,
    AllProvidersRefused,
    ModelNotFound,
    NoProviderConfigured,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnreachable,
    UnsupportedFeature,
    UpstreamError,
    UpstreamStreamError,
)
from llm_gateway.providers.router import Cooldowns, RoutedCompletion, RoutedStream, Router
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import Deployment
from llm_gateway.surfaces.chat import ChatSurface

CHAT = ChatSurface()


class ListStream:
    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self._chunks, self._error, self.closed = chunks, error, False
        self.usage: Usage | None = None
        self._iterator = self._run()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator

    def parsed(self, item: bytes) -> dict[str, Any] | None:
        return None

    async def _run(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._error:
            raise self._error

    async def aclose(self) -> None:
        self.closed = True


class ScriptedProvider:
    """Answers with whatever the test queued; records the upstream model names it was asked for."""

    def __init__(self, name: str, *outcomes: Exception | str) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.calls: list[str] = []

    def _next(self) -> Exception | str:
        return self.outcomes.pop(0) if self.outcomes else f"from {self.name}"

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        self.calls.append(model)
        outcome = self._next()
        if isinstance(outcome, Exception):
            raise outcome
        return Completion({"choices": [{"message": {"content": outcome}}]})

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> ListStream:
        self.calls.append(model)
        outcome = self._next()
        if isinstance(outcome, Exception):
            raise outcome
        return ListStream([chunk(role="assistant"), chunk(content=outcome), chunk(finish="stop")])

    async def aclose(self) -> None:
        pass


def chunk(*, role: str | None = None, content: str | None = None, finish: str | None = None) -> bytes:
    delta = {k: v for k, v in {"role": role, "content": content}.items() if v is not None}
    return orjson.dumps(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )


class ChatRoutes:
    """The router driven as the chat surface drives it: its attempt calls and its content test."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def complete(self, body: dict[str, Any], model: str) -> RoutedCompletion:
        async def attempt(provider: Any, deployment: Deployment, deadline: float, timeout: float) -> Completion:
            return await provider.chat(body, deployment.model, timeout=timeout)

        return await self.router.complete(model, [], attempt)

    async def stream(self, body: dict[str, Any], model: str) -> RoutedStream:
        async def open_stream(provider: Any, deployment: Deployment, deadline: float, timeout: float) -> Any:
            return await provider.chat_stream(body, deployment.model, timeout=timeout, deadline=deadline)

        return await self.router.stream(model, [], open_stream, CHAT.has_content)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)


def make_router(
    *providers: ScriptedProvider,
    cooldowns: Cooldowns | None = None,
    groups: dict[str, list[Deployment]] | None = None,
    request_timeout: float = 10,
) -> ChatRoutes:
    chain = [Deployment(provider=p.name, model=f"{p.name}-model") for p in providers]
    return ChatRoutes(
        Router(
            groups or {"group": chain},
            {p.name: p for p in providers},
            cooldowns or Cooldowns(3, 30),
            attempt_timeout=5,
            request_timeout=request_timeout,
        )
    )


def rejected(status: int, provider: str = "a") -> ProviderRejected:
    return ProviderRejected(f"status {status}", provider=provider, upstream_status=status)


@pytest.mark.parametrize("status", [401, 403, 408, 409, 429, 500, 502, 503, 504, 529])
async def test_retryable_statuses_fall_back(status: int) -> None:
    a, b = ScriptedProvider("a", rejected(status)), ScriptedProvider("b")
    routed = await make_router(a, b).complete({}, "group")
    assert routed.provider == "b" and routed.attempt_count == 2
    assert [(x.provider, x.status, x.error) for x in routed.attempts] == [
        ("a", status, "upstream_error"),
        ("b", 200, ""),
    ]
    assert all(x.duration >= 0 and x.start > 0 for x in routed.attempts)


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_other_4xx_go_back_to_the_caller(status: int) -> None:
    a, b = ScriptedProvider("a", rejected(status)), ScriptedProvider("b")
    with pytest.raises(ProviderRejected) as caught:
        await make_router(a, b).complete({}, "group")
    assert caught.value.status_code == status
    assert b.calls == []


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnreachable("down", provider="a"),
        ProviderTimeout("slow", provider="a"),
        UpstreamStreamError("cut", provider="a"),
    ],
)
async def test_transport_failures_fall_back(error: UpstreamError) -> None:
    a, b = ScriptedProvider("a", error), ScriptedProvider("b")
    assert (await make_router(a, b).complete({}, "group")).provider == "b"


async def test_all_failed_lists_every_attempt() -> None:
    a, b = ScriptedProvider("a", rejected(500)), ScriptedProvider("b", ProviderUnreachable("x", provider="b"))
    with pytest.raises(AllProvidersFailed) as caught:
        await make_router(a, b).complete({}, "group")
    assert caught.value.status_code == 502
    assert [(x.provider, x.status, x.error) for x in caught.value.attempts] == [
        ("a", 500, "upstream_error"),
        ("b", None, "upstream_unreachable"),
    ]


async def test_cooldown_skips_then_recovers() -> None:
    now = [0.0]
    cooldowns = Cooldowns(2, 30, clock=lambda: now[0])
    a = ScriptedProvider("a", rejected(500), rejected(500))
    b = ScriptedProvider("b")
    router = make_router(a, b, cooldowns=cooldowns)
    for _ in range(4):
        assert (await router.complete({}, "group")).provider == "b"
    assert len(a.calls) == 2  # cooled down after two failures
    now[0] = 31.0
    assert (await router.complete({}, "group")).provider == "a"


async def test_cooled_down_deployments_are_still_tried_last() -> None:
    cooldowns = Cooldowns(1, 30)
    cooldowns.failed("a/a-model")
    a, b = ScriptedProvider("a"), ScriptedProvider("b", rejected(503))
    routed = await make_router(a, b, cooldowns=cooldowns).complete({}, "group")
    assert routed.provider == "a" and [x.provider for x in routed.attempts] == ["b", "a"]


async def test_success_resets_the_failure_count() -> None:
    cooldowns = Cooldowns(2, 30)
    cooldowns.failed("a/a-model")
    cooldowns.succeeded("a/a-model")
    cooldowns.failed("a/a-model")
    assert not cooldowns.cooling("a/a-model")


def test_groups_without_a_usable_provider_are_unlisted_and_name_the_keys_to_set() -> None:
    """DESIGN.md, Fallback: a group none of whose providers has a key is 503 no_provider_configured, naming
    the variables to set (not 404 model_not_found: the newcomer's first request)."""
    a = ScriptedProvider("a")
    chain = [Deployment(provider=p, model="m") for p in ("openai", "anthropic", "openai", "b")]
    router = Router(
        {"keyless": chain, "g": [Deployment(provider="a", model="y")]},
        {"a": a},
        Cooldowns(3, 30),
        attempt_timeout=1,
        request_timeout=1,
    )
    assert router.model_names == ["g"]
    with pytest.raises(NoProviderConfigured) as raised:
        router.deployments("keyless")
    assert (raised.value.status, raised.value.code, raised.value.param) == (503, "no_provider_configured", "model")
    assert raised.value.message == (
        "No provider of the model 'keyless' has an API key: "
        "set OPENAI_API_KEY, ANTHROPIC_API_KEY or providers.b.api_key in GATEWAY_CONFIG."
    )
    with pytest.raises(ModelNotFound):
        router.deployments("no-such-group")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("anthropic/claude-opus-4", ("anthropic", "claude-opus-4")),
        ("claude-3-5-haiku-latest", ("anthropic", "claude-3-5-haiku-latest")),
        ("gpt-4.1-nano", ("openai", "gpt-4.1-nano")),
        ("o3-mini", ("openai", "o3-mini")),
        ("llama-3.3-70b-versatile", ("groq", "llama-3.3-70b-versatile")),
        ("groq/openai/gpt-oss-20b", ("groq", "openai/gpt-oss-20b")),
    ],
)
def test_direct_routing(model: str, expected: tuple[str, str]) -> None:
    router = make_router(ScriptedProvider("openai"), ScriptedProvider("anthropic"), ScriptedProvider("groq"))
    [deployment] = router.deployments(model)
    assert (deployment.provider, deployment.model) == expected


@pytest.mark.parametrize("model", ["mistral-large", "unknown/model", "cohere/command-r"])
def test_unknown_names_are_not_found(model: str) -> None:
    with pytest.raises(ModelNotFound):
        make_router(ScriptedProvider("openai")).deployments(model)


async def test_stream_holds_back_the_preamble_until_content() -> None:
    routed = await make_router(ScriptedProvider("a")).stream({}, "group")
    assert [orjson.loads(c)["choices"][0]["delta"] for c in routed.head] == [
        {"role": "assistant"},
        {"content": "from a"},
    ]


async def test_stream_failing_after_its_preamble_still_falls_back() -> None:
    class PreambleThenError(ScriptedProvider):
        async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> ListStream:
            self.stream = ListStream([chunk(role="assistant")], UpstreamStreamError("overloaded", provider="a"))
            return self.stream

    a, b = PreambleThenError("a"), ScriptedProvider("b")
    routed = await make_router(a, b).stream({}, "group")
    assert routed.provider == "b" and a.stream.closed


def refused(status: int, provider: str, retry_after: float | None = None) -> ProviderRejected:
    return ProviderRejected(
        f"status {status}", provider=provider, upstream_status=status, retry_after_seconds=retry_after
    )


@pytest.mark.parametrize("streaming", [False, True])
async def test_every_attempt_refused_for_rate_or_overload_is_429_with_the_smallest_retry_after(
    streaming: bool,
) -> None:
    a = ScriptedProvider("a", refused(429, "a", 12.0))
    b = ScriptedProvider("b", refused(529, "b"))  # carried no Retry-After: does not count
    c = ScriptedProvider("c", refused(429, "c", 6.2))
    router = make_router(a, b, c)
    with pytest.raises(AllProvidersRefused) as caught:
        await (router.stream({}, "group") if streaming else router.complete({}, "group"))

    error = caught.value
    assert isinstance(error, AllProvidersFailed)  # still the chain's failure, with its attempts
    assert (error.status_code, error.retry_after_seconds, error.overloaded) == (429, 7, True)
    assert error.headers() == {"retry-after": "7"}
    assert error.envelope() == {
        "error": {
            "message": "Every provider refused model 'group' for rate or overload: a: 429; b: 529; c: 429",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
            "attempts": [
                {"provider": "a", "model": "a-model", "status": 429, "error": "upstream_error"},
                {"provider": "b", "model": "b-model", "status": 529, "error": "upstream_error"},
                {"provider": "c", "model": "c-model", "status": 429, "error": "upstream_error"},
            ],
        }
    }


@pytest.mark.parametrize(
    ("retry_afters", "expected"),
    [
        ((None, None), None),  # none carried one: no Retry-After rather than an invented schedule
        ((0.2, None), 1),  # at least one second
        ((30.0, 2.0), 2),
        ((float("inf"), float("nan")), None),  # nonsense is ignored
        ((-5.0, 4.0), 4),
    ],
)
async def test_retry_after_is_the_smallest_carried_rounded_up(
    retry_afters: tuple[float | None, float | None], expected: int | None
) -> None:
    a = ScriptedProvider("a", refused(429, "a", retry_afters[0]))
    b = ScriptedProvider("b", refused(429, "b", retry_afters[1]))
    with pytest.raises(AllProvidersRefused) as caught:
        await make_router(a, b).complete({}, "group")
    assert caught.value.retry_after_seconds == expected
    assert caught.value.headers() == ({} if expected is None else {"retry-after": str(expected)})
    assert not caught.value.overloaded  # no 529 among the attempts


async def test_a_refusal_mixed_with_another_failure_stays_502() -> None:
    a, b = ScriptedProvider("a", refused(429, "a", 3.0)), ScriptedProvider("b", rejected(500, "b"))
    with pytest.raises(AllProvidersFailed) as caught:
        await make_router(a, b).complete({}, "group")
    assert type(caught.value) is AllProvidersFailed
    assert (caught.value.status_code, caught.value.code) == (502, "all_providers_failed")
    assert "retry-after" not in caught.value.headers()


async def test_refusals_then_the_deadline_stay_504() -> None:
    class Slow(ScriptedProvider):
        async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
            await asyncio.sleep(1)
            raise AssertionError("the request deadline cuts this attempt short")

    a, slow = ScriptedProvider("a", refused(429, "a", 3.0)), Slow("slow")
    with pytest.raises(AllProvidersFailed) as caught:
        await make_router(a, slow, request_timeout=0.05).complete({}, "group")
    assert type(caught.value) is AllProvidersFailed
    assert (caught.value.status_code, caught.value.timed_out) == (504, True)
    assert [(x.provider, x.status) for x in caught.value.attempts] == [("a", 429), ("slow", None)]


# -- a deployment that cannot carry the request is skipped, not failed ----------------------------


async def test_a_deployment_that_cannot_carry_the_request_is_skipped_without_a_failure() -> None:
    a, b = ScriptedProvider("a", UnsupportedFeature("A document block", provider="a")), ScriptedProvider("b")
    cooldowns = Cooldowns(1, 30)
    routes = make_router(a, b, cooldowns=cooldowns)
    routed = await routes.complete({}, "group")
    assert routed.provider == "b"
    assert [(x.provider, x.status) for x in routed.attempts] == [("b", 200)]  # no upstream call was made to a
    assert not cooldowns.cooling("a/a-model")


async def test_when_no_deployment_can_carry_the_request_it_is_400_naming_what() -> None:
    a = ScriptedProvider("a", UnsupportedFeature("The web_search tool", provider="a"))
    b = ScriptedProvider("b", UnsupportedFeature("The web_search tool", provider="b"))
    with pytest.raises(UnsupportedFeature) as refused:
        await make_router(a, b).complete({}, "group")
    assert refused.value.status_code == 400 and "web_search" in refused.value.message


async def test_a_skip_mixed_with_an_upstream_failure_is_the_502_of_the_failure() -> None:
    a, b = ScriptedProvider("a", rejected(500)), ScriptedProvider("b", UnsupportedFeature("x", provider="b"))
    with pytest.raises(AllProvidersFailed) as failed:
        await make_router(a, b).complete({}, "group")
    assert failed.value.status_code == 502
    assert [(x.provider, x.status) for x in failed.value.attempts] == [("a", 500)]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", ("aws-east", "anthropic.claude-3-haiku-20240307-v1:0")),
        ("azure/my-gpt-4o", ("azure-eu", "my-gpt-4o")),
        ("vertex/gemini-2.5-flash", ("vertex", "gemini-2.5-flash")),
        ("gemini-2.5-flash", ("gemini", "gemini-2.5-flash")),
        ("aws-west/amazon.nova-lite-v1:0", ("aws-west", "amazon.nova-lite-v1:0")),  # a provider's name wins
    ],
)
def test_cloud_prefixes_route_to_the_first_provider_of_that_type(model: str, expected: tuple[str, str]) -> None:
    names = ("aws-east", "aws-west", "azure-eu", "vertex", "gemini")
    types = {"aws-east": "bedrock", "aws-west": "bedrock", "azure-eu": "azure", "vertex": "vertex", "gemini": "gemini"}
    router = Router(
        {},
        {name: ScriptedProvider(name) for name in names},
        Cooldowns(3, 30),
        attempt_timeout=5,
        request_timeout=5,
        provider_types=types,
    )
    [deployment] = router.deployments(model)
    assert (deployment.provider, deployment.model) == expected


def test_a_type_prefix_without_a_usable_provider_of_that_type_is_not_found() -> None:
    router = Router(
        {},
        {"openai": ScriptedProvider("openai")},
        Cooldowns(3, 30),
        attempt_timeout=5,
        request_timeout=5,
        provider_types={"openai": "openai", "aws": "bedrock"},  # "aws" has no adapter: it had no credentials
    )
    for model in ("bedrock/amazon.nova-lite-v1:0", "gemini-2.5-flash"):
        with pytest.raises(ModelNotFound):
            router.deployments(model)

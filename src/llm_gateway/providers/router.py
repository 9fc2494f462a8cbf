"""Model groups -> ordered deployments, tried in turn until one answers.

A failure that another deployment may cure (``UpstreamError.retryable``) moves on to the
next one; any other goes straight back to the caller. Deployments that keep failing are
cooled down for a while. A stream may fall back only until its first chunk is in hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from llm_gateway.errors import (
    AllProvidersFailed,
    Attempt,
    ModelNotFound,
    NoProviderConfigured,
    ProviderTimeout,
    UnsupportedFeature,
    UpstreamError,
    UpstreamStreamError,
    all_providers_failed,
)
from llm_gateway.providers.base import Provider
from llm_gateway.schemas.core import ChunkStream, Completion
from llm_gateway.settings import Deployment, api_key_setting

T = TypeVar("T")
# One try on one deployment: (its provider, the deployment, the request's deadline in loop time, the
# attempt's timeout in seconds) -> what the deployment answered.
AttemptCall = Callable[[Provider, Deployment, float, float], Awaitable[T]]
# Whether a stream item carries content (text, a tool call, a finish): after it no fallback is possible.
ContentTest = Callable[[bytes], bool]

# Bare model names that route straight to one provider when no group matches.
DIRECT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude-", "anthropic"),
    ("gpt-", "openai"),
    ("text-embedding-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("llama", "groq"),
    ("meta-llama/", "groq"),
    ("gemma", "groq"),
    ("mixtral", "groq"),
    ("qwen", "groq"),
    ("deepseek-r1-distill", "groq"),
    ("moonshotai/", "groq"),
    ("gemini-", "gemini"),
)
# ``bedrock/…``, ``azure/…``, ``vertex/…``: straight to the first provider of that type, when no provider has that name.
TYPE_PREFIXES = ("azure", "bedrock", "vertex", "gemini")


class Cooldowns:
    """Counts consecutive failures per deployment; after ``failures`` of them, skip it for ``seconds``."""

    def __init__(self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._seconds = seconds
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def cooling(self, key: str) -> bool:
        until = self._until.get(key)
        return until is not None and self._clock() < until

    def failed(self, key: str) -> None:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count >= self._threshold:
            self._until[key] = self._clock() + self._seconds
            self._failures[key] = 0

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        self._until.pop(key, None)

    def remaining(self, key: str) -> float:
        """Seconds this deployment stays cooled down (0: healthy): what the console shows, read-only."""
        until = self._until.get(key)
        return max(0.0, until - self._clock()) if until is not None else 0.0

    def failures(self, key: str) -> int:
        """Consecutive failures counted towards the next cool-down."""
        return self._failures.get(key, 0)


@dataclass(slots=True)
class Routed:
    """Where an answer came from: the deployment that served it and every attempt, its own last."""

    provider: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)


@dataclass(slots=True)
class RoutedCompletion(Routed):
    completion: Completion = field(default_factory=lambda: Completion({}))


@dataclass(slots=True)
class RoutedStream(Routed):
    """An upstream stream whose first content already arrived (so no fallback is possible any more).

    ``head`` holds the chunks read so far: any content-less preamble (role, empty deltas) and the
    first chunk that carries content, a tool call or a finish reason.
    """

    head: list[bytes] = field(default_factory=list)
    stream: ChunkStream | None = None


class Router:
    def __init__(
        self,
        groups: dict[str, list[Deployment]],
        providers: dict[str, Provider],
        cooldowns: Cooldowns,
        *,
        attempt_timeout: float,
        request_timeout: float,
        provider_types: Mapping[str, str] | None = None,
    ) -> None:
        self._providers = providers
        # type -> the first usable provider of that type, for ``bedrock/<model id>`` and its kind.
        self._by_type: dict[str, str] = {}
        for name, kind in (provider_types or {}).items():
            if name in providers:
                self._by_type.setdefault(kind, name)
        # Only deployments whose provider has a key; a group left with none does not exist.
        self._groups = {
            name: usable for name, chain in groups.items() if (usable := [d for d in chain if d.provider in providers])
        }
        # ... but asking for it is 503 naming the keys to set, not 404: a newcomer's first request, most likely.
        self._keyless = {
            name: list(dict.fromkeys(api_key_setting(d.provider) for d in chain))
            for name, chain in groups.items()
            if name not in self._groups
        }
        self._cooldowns = cooldowns
        self._attempt_timeout = attempt_timeout
        self._request_timeout = request_timeout

    @property
    def model_names(self) -> list[str]:
        return sorted(self._groups)

    @property
    def groups(self) -> dict[str, list[Deployment]]:
        """Each model group's usable chain (a copy): what the console lists, with ``cooldowns``."""
        return {name: list(chain) for name, chain in self._groups.items()}

    @property
    def cooldowns(self) -> Cooldowns:
        return self._cooldowns

    def deployments(self, model: str) -> list[Deployment]:
        """The chain for a public model name; raises ModelNotFound, or NoProviderConfigured for a group whose
        providers all lack a key."""
        chain = self._groups.get(model)
        if chain is not None:
            return chain
        if model in self._keyless:
            raise NoProviderConfigured(model, self._keyless[model])
        provider, slash, upstream_model = model.partition("/")
        if slash and upstream_model and provider in self._providers:
            return [Deployment(provider=provider, model=upstream_model)]
        if slash and upstream_model and provider in TYPE_PREFIXES and provider in self._by_type:
            return [Deployment(provider=self._by_type[provider], model=upstream_model)]
        for prefix, name in DIRECT_PREFIXES:
            if model.startswith(prefix) and name in self._providers:
                return [Deployment(provider=name, model=model)]
        raise ModelNotFound(model)

    def _ordered(self, chain: list[Deployment]) -> list[Deployment]:
        """Healthy deployments first, cooled-down ones last (better a slim chance than none)."""
        healthy = [d for d in chain if not self._cooldowns.cooling(d.key)]
        return healthy + [d for d in chain if d not in healthy] if len(healthy) < len(chain) else chain

    def provider(self, name: str) -> Provider:
        return self._providers[name]

    async def complete(self, model: str, attempts: list[Attempt], attempt: AttemptCall[Completion]) -> RoutedCompletion:
        """Try the group's deployments in turn with ``attempt`` (the surface's one call, in its format);
        ``attempts`` collects every try as it ends."""
        deployment, completion = await self._try_chain(model, attempts, attempt)
        return RoutedCompletion(deployment.provider, deployment.model, attempts, completion)

    async def stream(
        self, model: str, attempts: list[Attempt], open_stream: AttemptCall[ChunkStream], has_content: ContentTest
    ) -> RoutedStream:
        """Like ``complete``, for a stream: committed to a deployment once its first content arrived
        (``has_content`` tells, in the surface's format, which item that is)."""

        async def attempt(
            provider: Provider, deployment: Deployment, deadline: float, timeout: float
        ) -> tuple[ChunkStream, list[bytes]]:
            stream = await open_stream(provider, deployment, deadline, timeout)
            return stream, await _read_head(stream, deployment.provider, has_content)

        deployment, (stream, head) = await self._try_chain(model, attempts, attempt)
        return RoutedStream(deployment.provider, deployment.model, attempts, head, stream)

    async def _try_chain(self, model: str, attempts: list[Attempt], attempt: AttemptCall[T]) -> tuple[Deployment, T]:
        """Run ``attempt`` on each deployment of the chain in turn, within the request's deadline, until one
        answers; every try lands in ``attempts``. Raises the first non-retryable failure as it is, or
        ``AllProvidersFailed`` (504 when out of time, 429 when every try was refused for rate or overload)."""
        chain = self._ordered(self.deployments(model))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout
        skipped: list[UnsupportedFeature] = []
        for deployment in chain:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AllProvidersFailed(model, attempts, timed_out=True)
            provider = self._providers[deployment.provider]
            started = time.perf_counter()
            try:
                async with asyncio.timeout(remaining):
                    result = await attempt(provider, deployment, deadline, min(self._attempt_timeout, remaining))
            except TimeoutError:
                self._fail(
                    deployment, attempts, started, ProviderTimeout("request timeout", provider=deployment.provider)
                )
                raise AllProvidersFailed(model, attempts, timed_out=True) from None
            except UnsupportedFeature as exc:  # this deployment cannot carry the request: not a failure of it
                skipped.append(exc)
                continue
            except UpstreamError as exc:
                self._fail(deployment, attempts, started, exc)
                continue
            self._succeed(deployment, attempts, started)
            return deployment, result
        if skipped and not attempts:
            raise skipped[0]  # no deployment of the group can carry it: 400, naming what
        raise all_providers_failed(model, attempts)

    def _succeed(self, deployment: Deployment, attempts: list[Attempt], started: float) -> None:
        self._cooldowns.succeeded(deployment.key)
        attempts.append(Attempt(deployment.provider, deployment.model, 200, "", started, time.perf_counter() - started))

    def _fail(self, deployment: Deployment, attempts: list[Attempt], started: float, exc: UpstreamError) -> None:
        attempts.append(
            Attempt(
                deployment.provider,
                deployment.model,
                exc.upstream_status,
                exc.code or "error",
                started,
                time.perf_counter() - started,
                exc.retry_after_seconds,
            )
        )
        if not exc.retryable:
            raise exc
        self._cooldowns.failed(deployment.key)


# Content-less chunks held back at most before the stream is committed to a deployment.
MAX_HEAD_CHUNKS = 8


async def _read_head(stream: ChunkStream, provider: str, has_content: ContentTest) -> list[bytes]:
    """Read up to the first chunk with content, so that a stream failing before it can still fall back.

    Upstreams announce a stream before they produce anything (OpenAI's role chunk, Anthropic's
    message_start and ping), and overload errors arrive right after; holding those few empty
    chunks back keeps fallback possible until the caller would have seen real content.
    """
    head: list[bytes] = []
    try:
        async for chunk in stream:
            head.append(chunk)
            if len(head) >= MAX_HEAD_CHUNKS or has_content(chunk):
                return head
    except BaseException:
        await stream.aclose()
        raise
    if head:  # a whole answer with no content at all (e.g. an empty completion): still an answer
        return head
    await stream.aclose()
    raise UpstreamStreamError(f"{provider} ended the stream without any chunk", provider=provider)

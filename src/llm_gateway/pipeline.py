"""The request pipeline of ``POST /v1/chat/completions``, one small step per method.

identify (the route's dependency) -> admit -> cache -> route -> settle -> record (DESIGN.md).
Each step lives in its own package; this module puts them in order, so the order can be read
in one place. Streams run the same steps; their settle and record happen when the stream ends
(``streaming.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_gateway import tokens
from llm_gateway.auth.identity import Identity
from llm_gateway.cache import ResponseCache, cache_key, completion_to_chunks, is_cacheable, is_complete
from llm_gateway.errors import Attempt, GatewayError, InternalError
from llm_gateway.limits import Admission, Ticket
from llm_gateway.providers.router import Router
from llm_gateway.schemas.core import ChatRequest, Usage
from llm_gateway.store.ledger import UsageLedger, UsageRow
from llm_gateway.telemetry import AttemptRecord, RequestRecord, Telemetry

ROUTE = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What ``Cache-Control`` asks of the cache: ``no-cache`` skips the lookup, ``no-store`` skips both."""

    lookup: bool = True
    store: bool = True

    @classmethod
    def from_header(cls, value: str | None) -> CachePolicy:
        if not value:
            return _DEFAULT_POLICY
        directives = {part.strip().split("=", 1)[0].lower() for part in value.split(",")}
        if "no-store" in directives:
            return cls(lookup=False, store=False)
        return cls(lookup="no-cache" not in directives, store=True)


_DEFAULT_POLICY = CachePolicy()


@dataclass(slots=True)
class Answer:
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class StreamAnswer:
    """A stream's headers, and its chunk payloads (JSON bytes, no SSE framing, no [DONE]).

    Iterating ``chunks`` raises ``GatewayError`` when the upstream fails after the first byte.
    """

    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    call: Call | None = None  # None for a stream replayed from the cache (settled before it began)

    async def settled(self) -> None:
        """Wait for the stream's settlement and record (started when its chunks ended), without cancelling it.

        The endpoint waits for this after the last byte went out: the caller has its answer, and the
        request's span and the ASGI call still cover the charge and the record."""
        settling = self.call.settling if self.call is not None else None
        if settling is not None:
            await asyncio.shield(settling)


@dataclass(slots=True)
class Call:
    """One request on its way through the pipeline: what each step needs from the ones before."""

    chat: ChatRequest
    identity: Identity
    record: RequestRecord
    policy: CachePolicy
    ticket: Ticket | None = None
    cache_key: str | None = None
    settled: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    settling: asyncio.Task[None] | None = None  # a stream's settlement, once its relay has ended

    @property
    def cache_header(self) -> str:
        if self.record.cache is not None:
            return self.record.cache
        return "bypass"


class ChatPipeline:
    def __init__(
        self,
        router: Router,
        limits: Admission,
        *,
        cache: ResponseCache | None,
        ledger: UsageLedger | None,
        telemetry: Telemetry | None,
        cache_scope: str = "user",
        completion_allowance: int = 4096,
    ) -> None:
        self.router = router
        self.limits = limits
        self.cache = cache
        self.ledger = ledger
        self.telemetry = telemetry
        self._global_cache = cache_scope == "global"
        self._allowance = completion_allowance
        self._background: set[asyncio.Task[Any]] = set()

    # -- the two entry points -----------------------------------------------------------------

    async def complete(
        self, chat: ChatRequest, identity: Identity, *, request_id: str, cache_control: str | None = None
    ) -> Answer:
        call = self._begin(chat, identity, request_id, cache_control)
        try:
            await self._admit(call)
            hit = await self._lookup(call)
            if hit is not None:
                await self.settle(call, None, cached=True)
                return Answer(orjson.dumps(hit), self._headers(call))
            routed = await self.router.complete(self._upstream_body(call), chat.model, self._attempts(call))
            call.record.provider, call.record.upstream_model = routed.provider, routed.model
            completion = routed.completion
            await self.settle(
                call, completion.usage or self.estimate_usage(call, tokens.completion_text(completion.body))
            )
            self.store_answer(call, completion.body)
            describe_answer(call.record, completion.body)
            return Answer(
                completion.to_bytes(), {**self._headers(call), **_routed_headers(routed.provider, routed.attempts)}
            )
        except GatewayError as exc:
            await self.fail(call, exc)
            raise
        except Exception:  # a bug: the request still ends as a 500, its reservation released, in the ledger
            await self.fail(call, InternalError())
            raise
        finally:
            self.finish_record(call)

    async def stream(
        self, chat: ChatRequest, identity: Identity, *, request_id: str, cache_control: str | None = None
    ) -> StreamAnswer:
        from llm_gateway.streaming import relay_upstream  # the stream's own steps, kept in their own module

        call = self._begin(chat, identity, request_id, cache_control)
        try:
            await self._admit(call)
            hit = await self._lookup(call)
            if hit is not None:
                await self.settle(call, None, cached=True)
                self.finish_record(call)
                return StreamAnswer(self._headers(call), _replay(hit, include_usage=chat.include_usage))
            body = self._upstream_body(call)
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            routed = await self.router.stream(body, chat.model, self._attempts(call))
        except Exception as exc:
            await self.fail(call, exc if isinstance(exc, GatewayError) else InternalError())
            self.finish_record(call)
            raise
        call.record.provider, call.record.upstream_model = routed.provider, routed.model
        headers = {**self._headers(call), **_routed_headers(routed.provider, routed.attempts)}
        return StreamAnswer(headers, relay_upstream(self, call, routed), call)

    # -- the steps ----------------------------------------------------------------------------

    def _begin(self, chat: ChatRequest, identity: Identity, request_id: str, cache_control: str | None) -> Call:
        self.router.deployments(chat.model)  # an unknown model is 404 before anything is counted
        record = RequestRecord.begin(
            request_id,
            ROUTE,
            chat.model,
            stream=chat.stream,
            user_id=identity.user_id,
            key_id=identity.key_id,
            request_body=chat.body,
        )
        return Call(chat, identity, record, CachePolicy.from_header(cache_control))

    async def _admit(self, call: Call) -> None:
        body = call.chat.body
        prompt = await tokens.estimate_prompt_tokens_async(body, call.chat.model)
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        call.ticket = await self.limits.admit(
            call.identity, prompt_tokens=prompt, max_completion_tokens=requested if isinstance(requested, int) else None
        )

    async def _lookup(self, call: Call) -> dict[str, Any] | None:
        if self.cache is None or not is_cacheable(call.chat.body) or not (call.policy.lookup or call.policy.store):
            return None
        scope = None if self._global_cache else call.identity.user_id
        call.cache_key = cache_key(call.chat.body, group=call.chat.model, scope_id=scope)
        if not call.policy.lookup:
            return None
        hit = await self.cache.get(call.cache_key)
        call.record.cache = "hit" if hit is not None else "miss"
        return hit

    @property
    def wants_answer_body(self) -> bool:
        """Whether telemetry reads a streamed answer whole (Helicone, or contents recorded on spans)."""
        return self.telemetry is not None and self.telemetry.wants_stream_body

    def may_store(self, call: Call) -> bool:
        return self.cache is not None and call.cache_key is not None and call.policy.store

    def store_answer(self, call: Call, completion: dict[str, Any]) -> None:
        # An answer to a body the gateway capped (this caller's budget nearly spent) is not the request's answer.
        if (
            self.cache is not None
            and call.cache_key is not None
            and call.policy.store
            and self._upstream_body(call) is call.chat.body
            and is_complete(completion)
        ):
            self.cache.set(call.cache_key, completion)

    def _upstream_body(self, call: Call) -> dict[str, Any]:
        """The caller's body; with the budget's remainder as the completion limit when that binds.

        Without a ``max_tokens`` of the caller's, the gateway reserves its default allowance; it
        sends a limit upstream only when the budget left is smaller than that, so a long answer can
        never run a nearly spent budget over, and a normal request reaches the model unchanged.
        """
        ticket = call.ticket
        if ticket is None or not ticket.cap_set_by_gateway or ticket.degraded:
            return call.chat.body
        if ticket.completion_cap >= self._allowance:
            return call.chat.body
        return {**call.chat.body, "max_completion_tokens": ticket.completion_cap}

    def _attempts(self, call: Call) -> list[Attempt]:
        return call.attempts

    def estimate_usage(self, call: Call, completion_text: str) -> Usage:
        """Usage when the upstream reported none: the admission's prompt estimate plus the counted answer."""
        prompt = call.ticket.prompt_tokens if call.ticket is not None else 0
        return Usage(prompt, tokens.count_completion_tokens(completion_text, call.chat.model))

    async def settle(self, call: Call, usage: Usage | None, *, cached: bool = False) -> None:
        if call.settled or call.ticket is None:
            return
        call.settled = True
        await self.limits.settle(call.ticket, usage, cached=cached)
        if usage is not None:
            call.record.prompt_tokens, call.record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        self._write_ledger(call, usage, cached=cached)

    async def fail(self, call: Call, exc: GatewayError) -> None:
        call.record.status, call.record.error = exc.status_code, exc.code or type(exc).__name__
        if call.ticket is not None:  # every answer carries x-ratelimit-*, failures after admission too
            exc.add_headers(call.ticket.headers())
        if call.ticket is not None and not call.settled:
            call.settled = True
            await self.limits.release(call.ticket)
            self._write_ledger(call, None, cached=False)

    def _write_ledger(self, call: Call, usage: Usage | None, *, cached: bool) -> None:
        if self.ledger is None or call.ticket is None:
            return
        record = call.record
        self.ledger.record(
            UsageRow(
                request_id=record.request_id,
                user_id=call.identity.user_id,
                key_id=call.identity.key_id,
                month=call.ticket.month,
                model_group=call.chat.model,
                provider=record.provider,
                upstream_model=record.upstream_model,
                cached=cached,
                status=record.status,
                prompt_tokens=usage.prompt_tokens if usage and not cached else 0,
                completion_tokens=usage.completion_tokens if usage and not cached else 0,
                latency_ms=int((time.perf_counter() - record.start) * 1000),
            )
        )

    def finish_record(self, call: Call) -> None:
        if self.telemetry is not None:
            call.record.attempts = [_attempt_record(a) for a in call.attempts]
            self.telemetry.record(call.record)

    def _headers(self, call: Call) -> dict[str, str]:
        headers = call.ticket.headers() if call.ticket is not None else {}
        headers["x-gateway-cache"] = call.cache_header
        return headers

    # -- background work that must finish before shutdown -------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` outside the request's task (e.g. a stream's settlement, which a disconnect must not cancel)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _attempt_record(attempt: Attempt) -> AttemptRecord:
    return AttemptRecord(
        attempt.provider, attempt.model, attempt.start, attempt.duration, attempt.status, attempt.error or None
    )


def _routed_headers(provider: str, attempts: list[Attempt]) -> dict[str, str]:
    return {"x-gateway-provider": provider, "x-gateway-attempts": str(len(attempts))}


def describe_answer(record: RequestRecord, completion: dict[str, Any]) -> None:
    """What telemetry reads from an answer (plain or assembled from a stream)."""
    record.response_model = completion.get("model") if isinstance(completion.get("model"), str) else None
    record.response_body = completion
    record.finish_reasons = tuple(
        str(choice["finish_reason"])
        for choice in completion.get("choices") or ()
        if isinstance(choice, dict) and choice.get("finish_reason")
    )


def describe_chunks(record: RequestRecord, chunks: list[dict[str, Any]]) -> None:
    """``describe_answer`` for a stream, read off its chunks without assembling the answer."""
    model = next((chunk.get("model") for chunk in chunks if chunk.get("model")), None)
    record.response_model = model if isinstance(model, str) else None
    reasons: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                index = choice.get("index")
                reasons[index if isinstance(index, int) else 0] = str(choice["finish_reason"])
    record.finish_reasons = tuple(reasons[index] for index in sorted(reasons))


async def _replay(completion: dict[str, Any], *, include_usage: bool) -> AsyncIterator[bytes]:
    for chunk in completion_to_chunks(completion, include_usage=include_usage):
        yield chunk

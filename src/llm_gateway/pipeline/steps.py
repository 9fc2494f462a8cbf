"""The request pipeline of ``POST /v1/chat/completions``, one small step per method.

identify (the route's dependency) -> admit -> cache -> route -> settle -> record (DESIGN.md).
Each step lives in its own package; this module puts them in order, so the order can be read
in one place. A stream runs the same steps; its settle and record happen when it ends, in its
owner (``stream.StreamRun``). Every admitted request is settled and recorded exactly once,
whatever ends it: an answer, a failure, or a cancellation at any await.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

import orjson

from llm_gateway import tokens
from llm_gateway.auth.identity import Identity
from llm_gateway.cache import ResponseCache, cache_key, completion_to_chunks, is_cacheable, is_complete
from llm_gateway.errors import GatewayError, InternalError
from llm_gateway.limits import Admission
from llm_gateway.pipeline.call import (
    Answer,
    CachePolicy,
    Call,
    StreamAnswer,
    attempt_record,
    describe_answer,
    routed_headers,
)
from llm_gateway.pipeline.stream import CLIENT_CLOSED, ReplayedStream, StreamRun
from llm_gateway.providers.router import Router
from llm_gateway.schemas.core import ChatRequest, Usage
from llm_gateway.store.ledger import UsageLedger, UsageRow
from llm_gateway.telemetry import RequestRecord, Telemetry

ROUTE = "/v1/chat/completions"


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
            hit = await self._admit_and_look_up(call)
            if hit is not None:
                return Answer(orjson.dumps(hit), self._headers(call))
            body = self._upstream_body(call)
            routed = await self.router.complete(body, chat.model, call.attempts)
            call.record.provider, call.record.upstream_model = routed.provider, routed.model
            call.record.dropped_params = self.router.dropped_params(routed, body)
            completion = routed.completion
            usage = completion.usage or self.estimate_usage(
                call, tokens.count_completion_tokens(tokens.completion_text(completion.body), chat.model)
            )
            await self.settle(call, usage)
            self.store_answer(call, completion.body)
            describe_answer(call.record, completion.body)
            return Answer(completion.to_bytes(), {**self._headers(call), **routed_headers(call.record, routed)})
        except BaseException as exc:
            await self._abandon(call, exc)
            raise
        finally:
            self.finish_record(call)

    async def stream(
        self, chat: ChatRequest, identity: Identity, *, request_id: str, cache_control: str | None = None
    ) -> StreamAnswer:
        """The stream's headers and its owner, once its first content is in hand (fallback ends there)."""
        call = self._begin(chat, identity, request_id, cache_control)
        try:
            hit = await self._admit_and_look_up(call)
            if hit is not None:
                self.finish_record(call)
                return ReplayedStream(self._headers(call), _replay(hit, include_usage=chat.include_usage))
            body = self._upstream_body(call)
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
            routed = await self.router.stream(body, chat.model, call.attempts)
        except BaseException as exc:
            await self._abandon(call, exc)
            self.finish_record(call)
            raise
        call.record.provider, call.record.upstream_model = routed.provider, routed.model
        call.record.dropped_params = self.router.dropped_params(routed, body)
        return StreamRun(self, call, routed, {**self._headers(call), **routed_headers(call.record, routed)})

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

    async def _admit_and_look_up(self, call: Call) -> dict[str, Any] | None:
        """Admit the request, then look its answer up: a hit is settled at once (it charges nothing)."""
        await self._admit(call)
        hit = await self._lookup(call)
        if hit is not None:
            await self.settle(call, None, cached=True)
        return hit

    async def _admit(self, call: Call) -> None:
        body = call.chat.body
        prompt = await tokens.estimate_prompt_tokens_async(body, call.chat.model)
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        choices = body.get("n")
        call.ticket = await self.limits.admit(
            call.identity,
            prompt_tokens=prompt,
            max_completion_tokens=requested if isinstance(requested, int) else None,
            choices=choices if isinstance(choices, int) and choices > 1 else 1,
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

    def _upstream_body(self, call: Call) -> dict[str, Any]:
        """The caller's body with the reserved completion cap, which always goes upstream.

        A caller's own ``max_tokens``/``max_completion_tokens`` is the cap reserved, sent as it is.
        Without one the gateway reserved a cap of its own (the default allowance, or the budget's
        remainder when smaller) and sends it as ``max_completion_tokens``: an answer can then never
        run past what was reserved, whatever the budget has left.
        """
        ticket = call.ticket
        if ticket is None or not ticket.cap_set_by_gateway:
            return call.chat.body
        if call.upstream_body is None:
            call.upstream_body = {**call.chat.body, "max_completion_tokens": ticket.completion_cap}
        return call.upstream_body

    @property
    def wants_answer_body(self) -> bool:
        """Whether telemetry reads a streamed answer whole (Helicone, or contents recorded on spans)."""
        return self.telemetry is not None and self.telemetry.wants_stream_body

    def may_store(self, call: Call) -> bool:
        return self.cache is not None and call.cache_key is not None and call.policy.store

    def store_answer(self, call: Call, completion: dict[str, Any]) -> None:
        # An answer the gateway's own cap cut short is not the answer to the caller's request.
        if self.cache is None or call.cache_key is None or not call.policy.store or not is_complete(completion):
            return
        ticket = call.ticket
        if ticket is not None and ticket.cap_set_by_gateway and _any_cut_by_length(completion):
            return
        self.cache.set(call.cache_key, completion)

    def estimate_usage(self, call: Call, completion_tokens: int) -> Usage:
        """Usage when the upstream reported none: the admission's prompt estimate plus the counted answer."""
        prompt = call.ticket.prompt_tokens if call.ticket is not None else 0
        return Usage(prompt, completion_tokens)

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
        await self._release(call)

    async def _abandon(self, call: Call, exc: BaseException) -> None:
        """A request that ends without an answer: its reservation released, its status recorded.

        Run in a task of its own and shielded: a cancellation (the caller went away) must not cut
        the release short, or the reservation would stay held until it expires.
        """
        if isinstance(exc, GatewayError):
            work = self.fail(call, exc)
        elif isinstance(exc, asyncio.CancelledError):
            call.record.status, call.record.error = CLIENT_CLOSED, "client_closed"
            work = self._release(call)
        else:  # a bug: the request still ends as a 500, its reservation released, in the ledger
            work = self.fail(call, InternalError())
        await asyncio.shield(self.spawn(work))

    async def _release(self, call: Call) -> None:
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
        if call.recorded:
            return
        call.recorded = True
        if self.telemetry is not None:
            call.record.attempts = [attempt_record(a) for a in call.attempts]
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


def _any_cut_by_length(completion: dict[str, Any]) -> bool:
    return any(isinstance(choice, dict) and choice.get("finish_reason") == "length" for choice in completion["choices"])


async def _replay(completion: dict[str, Any], *, include_usage: bool) -> AsyncGenerator[bytes, None]:
    for chunk in completion_to_chunks(completion, include_usage=include_usage):
        yield chunk

"""The request pipeline, one small step per method, for every API surface.

identify (the route's dependency) -> admit -> cache -> route -> settle -> record (docs/architecture.md).
Each step lives in its own package; this module puts them in order, so the order can be read
in one place. What depends on a surface's wire format is asked of its ``Surface`` (the call's
``surface``): nothing here knows Chat Completions from Messages. A stream runs the same steps;
its settle and record happen when it ends, in its owner (``stream.StreamRun``). Every admitted
request is settled and recorded exactly once, whatever ends it: an answer, a failure, or a
cancellation at any await.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from llm_gateway import tokens
from llm_gateway.auth.identity import Identity
from llm_gateway.cache import ResponseCache
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
from llm_gateway.pricing import ZERO, format_usd, from_nano, to_nano
from llm_gateway.pricing_book import PriceBook
from llm_gateway.providers.base import Provider
from llm_gateway.providers.router import Routed, Router
from llm_gateway.schemas.core import ChunkStream, Completion, Usage
from llm_gateway.settings import Deployment
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.surfaces.base import Surface, SurfaceRequest
from llm_gateway.telemetry import RequestRecord, Telemetry

R = TypeVar("R", bound=SurfaceRequest)


class Pipeline:
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
        prices: PriceBook | None = None,
    ) -> None:
        self.router = router
        self.limits = limits
        self.cache = cache
        self.ledger = ledger
        self.telemetry = telemetry
        self._global_cache = cache_scope == "global"
        self._allowance = completion_allowance
        self.prices = prices
        self._background: set[asyncio.Task[Any]] = set()

    # -- the two entry points -----------------------------------------------------------------

    async def complete(
        self,
        surface: Surface[R],
        request: R,
        identity: Identity,
        *,
        request_id: str,
        cache_control: str | None = None,
    ) -> Answer:
        call = self._begin(surface, request, identity, request_id, cache_control)
        try:
            hit = await self._admit_and_look_up(call)
            if hit is not None:
                return Answer(orjson.dumps(surface.from_cache(hit)), self._headers(call))
            body = self._upstream_body(call)

            async def attempt(
                provider: Provider, deployment: Deployment, deadline: float, timeout: float
            ) -> Completion:
                return await surface.answer(provider, deployment.model, request, body, timeout=timeout)

            routed = await self.router.complete(request.model, call.attempts, attempt)
            self._routed(call, routed, body)
            completion = routed.completion
            usage = surface.usage(completion.body) or self.estimate_usage(
                call, tokens.count_completion_tokens(surface.answer_text(completion.body), request.model)
            )
            await self.settle(call, usage)
            self.store_answer(call, completion.body)
            self.describe(call, completion.body)
            return Answer(completion.to_bytes(), {**self._headers(call), **routed_headers(call.record, routed)})
        except BaseException as exc:
            await self._abandon(call, exc)
            raise
        finally:
            self.finish_record(call)

    async def stream(
        self,
        surface: Surface[R],
        request: R,
        identity: Identity,
        *,
        request_id: str,
        cache_control: str | None = None,
    ) -> StreamAnswer:
        """The stream's headers and its owner, once its first content is in hand (fallback ends there)."""
        call = self._begin(surface, request, identity, request_id, cache_control)
        try:
            hit = await self._admit_and_look_up(call)
            if hit is not None:
                self.finish_record(call)
                return ReplayedStream(self._headers(call), _replay(surface.replay(surface.from_cache(hit), request)))
            body = self._upstream_body(call)

            async def open_stream(
                provider: Provider, deployment: Deployment, deadline: float, timeout: float
            ) -> ChunkStream:
                return await surface.open_stream(
                    provider, deployment.model, request, body, timeout=timeout, deadline=deadline
                )

            routed = await self.router.stream(request.model, call.attempts, open_stream, surface.has_content)
        except BaseException as exc:
            await self._abandon(call, exc)
            self.finish_record(call)
            raise
        self._routed(call, routed, body)
        return StreamRun(self, call, routed, {**self._headers(call), **routed_headers(call.record, routed)})

    # -- the steps ----------------------------------------------------------------------------

    def _begin(
        self, surface: Surface[R], request: R, identity: Identity, request_id: str, cache_control: str | None
    ) -> Call:
        self.router.deployments(request.model)  # an unknown model is 404 before anything is counted
        record = RequestRecord.begin(
            request_id,
            surface.route,
            request.model,
            stream=request.stream,
            user_id=identity.user_id,
            key_id=identity.key_id,
            request_body=request.body,
            operation=surface.operation,
        )
        return Call(surface, request, identity, record, CachePolicy.from_header(cache_control))

    async def _admit_and_look_up(self, call: Call) -> dict[str, Any] | None:
        """Admit the request, then look its answer up: a hit is settled at once (it charges nothing)."""
        await self._admit(call)
        hit = await self._lookup(call)
        if hit is not None:
            await self.settle(call, None, cached=True)
        return hit

    async def _admit(self, call: Call) -> None:
        """Reserve tokens, and US dollars at the dearest price of the group's chain (who answers is not known yet)."""
        surface, request = call.surface, call.request
        price = None
        if self.prices is not None:
            price = self.prices.reserve_price(request.model, self.router.deployments(request.model))
        call.ticket = await self.limits.admit(
            call.identity,
            prompt_tokens=await surface.prompt_tokens(request),
            max_completion_tokens=surface.completion_cap(request),
            choices=surface.choices(request),
            price=price,
        )

    async def _lookup(self, call: Call) -> dict[str, Any] | None:
        if self.cache is None or not (call.policy.lookup or call.policy.store):
            return None
        call.cache_key = call.surface.cache_key(call.request, None if self._global_cache else call.identity.user_id)
        if call.cache_key is None or not call.policy.lookup:
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
        if call.upstream_body is None:
            ticket = call.ticket
            cap = ticket.completion_cap if ticket is not None and ticket.cap_set_by_gateway else None
            call.upstream_body = call.surface.upstream_body(call.request, cap)
        return call.upstream_body

    def _routed(self, call: Call, routed: Routed, body: dict[str, Any]) -> None:
        """Who answered, and what of the request it did not honour."""
        record = call.record
        record.provider, record.upstream_model = routed.provider, routed.model
        provider = self.router.provider(routed.provider)
        record.dropped_params = call.surface.dropped_params(provider, routed.model, call.request, body)

    @property
    def wants_answer_body(self) -> bool:
        """Whether telemetry reads a streamed answer whole (Helicone, or contents recorded on spans)."""
        return self.telemetry is not None and self.telemetry.wants_stream_body

    def may_store(self, call: Call) -> bool:
        return self.cache is not None and call.cache_key is not None and call.policy.store

    def store_answer(self, call: Call, completion: dict[str, Any]) -> None:
        # An answer the gateway's own cap cut short is not the answer to the caller's request.
        if self.cache is None or call.cache_key is None or not call.policy.store:
            return
        capped = call.ticket is not None and call.ticket.cap_set_by_gateway
        if call.surface.storable(completion, capped_by_gateway=capped):
            self.cache.set(call.cache_key, call.surface.to_cache(completion))

    def describe(self, call: Call, answer: dict[str, Any]) -> None:
        describe_answer(call, answer)

    def estimate_usage(self, call: Call, completion_tokens: int) -> Usage:
        """Usage when the upstream reported none: the admission's prompt estimate plus the counted answer."""
        prompt = call.ticket.prompt_tokens if call.ticket is not None else 0
        return Usage(prompt, completion_tokens)

    async def settle(self, call: Call, usage: Usage | None, *, cached: bool = False) -> None:
        if call.settled or call.ticket is None:
            return
        call.settled = True
        cost = self._cost(call, usage, cached=cached)
        await self.limits.settle(call.ticket, usage, cached=cached, cost_nano=None if cost is None else to_nano(cost))
        if usage is not None:
            call.record.prompt_tokens, call.record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        # What the budgets were charged: the cost, or (usage unknown) the whole US-dollar reservation.
        call.record.cost_usd = cost if cost is not None else from_nano(call.ticket.reserved_nano)
        self._write_ledger(call, usage, cached=cached)

    def _cost(self, call: Call, usage: Usage | None, *, cached: bool) -> Decimal | None:
        """The answer's cost at the answering deployment's price; 0 for a cache hit or an unpriced deployment
        (``unpriced`` on the record); None when the usage is unknown."""
        if cached:
            return ZERO
        if usage is None:
            return None
        record = call.record
        price = None
        if self.prices is not None and record.provider is not None and record.upstream_model is not None:
            price = self.prices.price(record.provider, record.upstream_model)
        if price is None:
            record.unpriced = record.provider is not None
            return ZERO
        return price.cost(usage)

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
                team_id=call.identity.team_id,
                month=call.ticket.month,
                model_group=call.request.model,
                endpoint=call.surface.name,
                provider=record.provider,
                upstream_model=record.upstream_model,
                cached=cached,
                status=record.status,
                cost_usd=record.cost_usd or ZERO,
                prompt_tokens=usage.prompt_tokens if usage and not cached else 0,
                completion_tokens=usage.completion_tokens if usage and not cached else 0,
                latency_ms=int((time.perf_counter() - record.start) * 1000),
                attempts=len(call.attempts),  # 0: a cache hit, or a request that ended before any upstream
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
        if call.record.cost_usd is not None:  # settled: a whole answer, or a hit (a stream's cost is known at its end)
            headers["x-gateway-cost-usd"] = format_usd(call.record.cost_usd)
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


async def _replay(items: list[bytes]) -> AsyncGenerator[bytes, None]:
    for item in items:
        yield item

"""The owner of one admitted stream: relay, finish, settle, record and release, each exactly once.

The endpoint iterates ``chunks`` and then awaits ``aclose()``, however the stream ended: finished,
failed upstream, cut by the client, or cancelled before its first byte. ``aclose()`` runs the finish
in a task of its own (``Settlement.spawn``), so that a disconnect, which cancels the request, cannot
cancel the charge for what was generated; a second call only waits for the first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from llm_gateway.errors import GatewayError
from llm_gateway.pipeline.call import Call
from llm_gateway.pipeline.meter import StreamMeter
from llm_gateway.providers.router import RoutedStream
from llm_gateway.schemas.core import Usage

CLIENT_CLOSED = 499  # nginx's convention for "the client went away before the answer was complete"
# Payloads past this many bytes are assembled in a worker thread: the event loop keeps serving meanwhile.
ASSEMBLE_INLINE_BYTES = 256 * 1024


class Settlement(Protocol):
    """The pipeline's last steps, as a stream's owner calls them when the stream has ended."""

    @property
    def wants_answer_body(self) -> bool: ...

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

    def may_store(self, call: Call) -> bool: ...

    def store_answer(self, call: Call, completion: dict[str, Any]) -> None: ...

    def estimate_usage(self, call: Call, completion_tokens: int) -> Usage: ...

    def describe(self, call: Call, answer: dict[str, Any]) -> None: ...

    async def settle(self, call: Call, usage: Usage | None) -> None: ...

    def finish_record(self, call: Call) -> None: ...


class StreamRun:
    """One upstream stream relayed to its caller; ``aclose()`` ends it (idempotent)."""

    def __init__(self, steps: Settlement, call: Call, routed: RoutedStream, headers: dict[str, str]) -> None:
        self.headers = headers
        self._steps = steps
        self._call = call
        self._routed = routed
        ticket = call.ticket
        cap = None if ticket is None or ticket.degraded else ticket.completion_tokens_reserved
        keep = steps.may_store(call) or steps.wants_answer_body
        self._meter = StreamMeter(call.surface.read_item, model=call.request.model, cap_tokens=cap, keep=keep)
        self._finished = False
        self._error: GatewayError | None = None
        self._closing: asyncio.Task[None] | None = None
        self.chunks: AsyncGenerator[bytes, None] = self._relay()

    async def aclose(self) -> None:
        if self._closing is None:
            self._closing = self._steps.spawn(self._finish())
        await asyncio.shield(self._closing)

    async def _relay(self) -> AsyncGenerator[bytes, None]:
        """Items as they arrive (the head the router read, then the rest of the upstream stream), measured, as
        the surface relays them to the caller. One generator over the stream: a layer more costs on every item."""
        call, meter, surface, request, routed = (
            self._call,
            self._meter,
            self._call.surface,
            self._call.request,
            self._routed,
        )
        try:
            for item in routed.head:
                relayed = surface.relay_item(item, meter.feed(item), request)
                if relayed is not None:
                    call.record.first_byte()
                    yield relayed
            stream = routed.stream
            assert stream is not None
            async for item in stream:
                relayed = surface.relay_item(item, meter.feed(item, stream.parsed(item)), request)
                if relayed is None:
                    continue
                call.record.first_byte()
                yield relayed
            self._finished = True
        except GatewayError as exc:
            self._error = exc
            raise

    async def _finish(self) -> None:
        """Charge what was generated (finished or not), store a whole answer, record the request."""
        call, steps, meter = self._call, self._steps, self._meter
        usage: Usage | None = None
        try:
            await self.chunks.aclose()  # a relay cut before its end reads no more
            assert self._routed.stream is not None
            await self._routed.stream.aclose()
            if call.attempts:  # the answering attempt lasted until its stream ended
                last = call.attempts[-1]
                call.attempts[-1] = dataclasses.replace(last, duration=time.perf_counter() - last.start)
            usage = self._routed.stream.usage or steps.estimate_usage(call, meter.completion_tokens())
            await self._describe()
        finally:
            if self._error is not None:
                call.record.status, call.record.error = self._error.status_code, self._error.code or "upstream_error"
            elif not self._finished:
                call.record.status, call.record.error = CLIENT_CLOSED, "client_closed"
            await steps.settle(call, usage)  # None (a failure of the finish itself) charges the reservation
            steps.finish_record(call)

    async def _describe(self) -> None:
        """The answer for the cache and for telemetry that records answers; else what telemetry reads of it."""
        call, steps, items = self._call, self._steps, self._meter.items
        if items and ((self._finished and steps.may_store(call)) or steps.wants_answer_body):
            if sum(map(len, items)) > ASSEMBLE_INLINE_BYTES:
                answer = await asyncio.to_thread(call.surface.assemble, items)
            else:
                answer = call.surface.assemble(items)
            if self._finished:
                steps.store_answer(call, answer)
            steps.describe(call, answer)
            return
        call.record.response_model = self._meter.response_model
        call.record.finish_reasons = self._meter.ordered_finish_reasons()


@dataclass(slots=True)
class ReplayedStream:
    """A cached answer replayed as a stream: settled and recorded before its first item."""

    headers: dict[str, str]
    chunks: AsyncGenerator[bytes, None]

    async def aclose(self) -> None:
        await self.chunks.aclose()

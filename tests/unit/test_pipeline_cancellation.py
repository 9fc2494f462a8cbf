"""Every admitted request is settled exactly once, whatever is cancelled where.

A caller that goes away cancels its request at whatever it awaits at that moment. Here a gate stops
the request at each await of its start (the prompt estimate, the admission, the cache lookup, the
upstream's connect and first chunk, the endpoint's first send, the relay) and the test cancels it
there. After it: nothing is left reserved, the ledger has one row exactly when the request was
admitted, telemetry has exactly one record, and an opened upstream stream was closed. Run against
the in-process limits and against Redis (where a cancellation can land while the admission script
runs in Redis).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from llm_gateway import tokens
from llm_gateway.auth.identity import Identity
from llm_gateway.cache import MemoryCache
from llm_gateway.limits import Admission, MemoryLimits, RedisLimits
from llm_gateway.limits.base import utcnow
from llm_gateway.limits.budget import month_of
from llm_gateway.pipeline import Pipeline
from llm_gateway.providers.router import Cooldowns, Router
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.schemas.openai import parse_chat_request
from llm_gateway.settings import Deployment
from llm_gateway.surfaces.chat import ChatSurface

MONTH_BUDGET = 100_000
CHAT = ChatSurface()
WHO = Identity("alice", "jwt", 1000, MONTH_BUDGET)


class Gate:
    """Stops the request at the await named ``target`` until it is cancelled there."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.reached = asyncio.Event()

    async def at(self, name: str, *, hold: float | None = None) -> None:
        """Stop here when this is the target: until cancelled, or for ``hold`` seconds (work that goes on)."""
        if name == self.target:
            self.reached.set()
            await (asyncio.sleep(hold) if hold is not None else asyncio.Event().wait())


def chunk(content: str | None, finish: str | None = None, *, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    return orjson.dumps(
        {"id": "c", "object": "chat.completion.chunk", "model": "up", "choices": choices, "usage": usage}
    )


class ScriptedStream:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.usage: Usage | None = None
        self.closed = False
        self._iterator = self._chunks()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator

    def parsed(self, item: bytes) -> dict[str, Any] | None:
        return None

    async def _chunks(self) -> AsyncIterator[bytes]:
        await self.gate.at("head")
        yield chunk("Hel")
        await self.gate.at("relay")
        yield chunk("lo", "stop")
        self.usage = Usage(9, 2)
        yield chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class ScriptedProvider:
    gate: Gate
    name: str = "p"
    streams: list[ScriptedStream] = field(default_factory=list)

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        await self.gate.at("upstream")
        message = {"role": "assistant", "content": "Hello"}
        return Completion(
            {
                "id": "c",
                "object": "chat.completion",
                "model": "up",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
            }
        )

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> Any:
        await self.gate.at("connect")
        stream = ScriptedStream(self.gate)
        self.streams.append(stream)
        return stream

    def dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        return None


class GatedCache(MemoryCache):
    def __init__(self, gate: Gate) -> None:
        super().__init__(max_bytes=1 << 20, ttl_seconds=60)
        self.gate = gate

    async def get(self, key: str) -> dict[str, Any] | None:
        await self.gate.at("cache")
        return await super().get(key)


@dataclass
class Recorder:
    """Telemetry and ledger stand-ins: what the pipeline recorded."""

    records: list[Any] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)
    wants_stream_body: bool = False

    def record(self, item: Any) -> None:
        (self.rows if type(item).__name__ == "UsageRow" else self.records).append(item)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[Gate], Admission]]:
    clients: list[Redis] = []
    prefix = f"test:cancel:{uuid.uuid4().hex[:10]}:"

    def make(gate: Gate) -> Admission:
        if request.param == "memory":

            class GatedMemory(MemoryLimits):
                async def admit(self, *args: Any, **kwargs: Any) -> Any:
                    await gate.at("admit")  # nothing is reserved before this await returns
                    return await super().admit(*args, **kwargs)

            return GatedMemory()
        client = Redis.from_url(request.getfixturevalue("redis_url"))
        clients.append(client)
        limits = RedisLimits(client, prefix, timeout_seconds=5.0)
        run = limits._run

        async def run_then_wait(script: Any, keys: list[str], args: list[str | int]) -> Any:
            result = await run(script, keys, args)
            if script is limits._admit_script and int(result[0]) == 0:
                # The script reserved in Redis; the caller is cancelled while its answer is on the way.
                await gate.at("admit", hold=0.2)
            return result

        limits._run = run_then_wait  # type: ignore[method-assign]
        return limits

    yield make
    for client in clients:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@dataclass
class Setup:
    pipeline: Pipeline
    limits: Admission
    provider: ScriptedProvider
    recorder: Recorder


def build(gate: Gate, make_limits: Callable[[Gate], Admission], monkeypatch: pytest.MonkeyPatch) -> Setup:
    estimate = tokens.estimate_prompt_tokens_async

    async def gated_estimate(*args: Any, **kwargs: Any) -> int:
        await gate.at("prompt")
        return await estimate(*args, **kwargs)

    monkeypatch.setattr(tokens, "estimate_prompt_tokens_async", gated_estimate)
    provider = ScriptedProvider(gate)
    router = Router(
        {"m": [Deployment(provider="p", model="up")]},
        {"p": provider},
        Cooldowns(3, 30),
        attempt_timeout=5,
        request_timeout=10,
    )
    recorder = Recorder()
    limits = make_limits(gate)
    pipeline = Pipeline(
        router,
        limits,
        cache=GatedCache(gate),
        ledger=recorder,  # type: ignore[arg-type]
        telemetry=recorder,  # type: ignore[arg-type]
    )
    return Setup(pipeline, limits, provider, recorder)


def chat(*, stream: bool) -> Any:
    return parse_chat_request(
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    )


async def consume_stream(setup: Setup, gate: Gate) -> None:
    """What the chat endpoint does with a stream: send its head, relay its chunks, then always ``aclose()``."""
    answer = await setup.pipeline.stream(CHAT, chat(stream=True), WHO, request_id="r")
    try:
        await gate.at("first-send")
        async for _ in answer.chunks:
            pass
    finally:
        await answer.aclose()


async def cancel_at(setup: Setup, gate: Gate, work: Any) -> None:
    task = asyncio.ensure_future(work)
    async with asyncio.timeout(5):
        await gate.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await setup.pipeline.drain()


async def reserved(setup: Setup) -> int:
    """What is still reserved once background work is done (bounded wait: a release may still be in flight)."""
    month = month_of(utcnow())
    for _ in range(50):
        await setup.limits.aclose()  # waits for releases the limits run in the background
        balance = await setup.limits.balance(WHO.user_id, month, MONTH_BUDGET)
        if balance.reserved == 0:
            break
        await asyncio.sleep(0.02)
    return balance.reserved


async def check_settled_once(setup: Setup, *, admitted: bool) -> None:
    # Redis: with the admission cancelled while its script ran in Redis, the hold it made was given back too.
    assert await reserved(setup) == 0, "the reservation is held after the cancellation"
    assert len(setup.recorder.rows) == (1 if admitted else 0)
    assert [record.status for record in setup.recorder.records] == [499]
    for stream in setup.provider.streams:
        assert stream.closed


STREAM_POINTS = {"prompt": False, "admit": False, "cache": True, "connect": True, "head": True, "first-send": True}


@pytest.mark.parametrize("point", [*STREAM_POINTS, "relay"])
async def test_a_stream_cancelled_at_any_await_of_its_start_is_settled_once(
    point: str, backend: Callable[[Gate], Admission], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(point)
    setup = build(gate, backend, monkeypatch)
    await cancel_at(setup, gate, consume_stream(setup, gate))
    await check_settled_once(setup, admitted=STREAM_POINTS.get(point, True))


COMPLETE_POINTS = {"prompt": False, "admit": False, "cache": True, "upstream": True}


@pytest.mark.parametrize("point", list(COMPLETE_POINTS))
async def test_a_completion_cancelled_at_any_await_is_settled_once(
    point: str, backend: Callable[[Gate], Admission], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(point)
    setup = build(gate, backend, monkeypatch)
    await cancel_at(setup, gate, setup.pipeline.complete(CHAT, chat(stream=False), WHO, request_id="r"))
    await check_settled_once(setup, admitted=COMPLETE_POINTS[point])


async def test_a_stream_that_ends_normally_is_settled_and_recorded_once(
    backend: Callable[[Gate], Admission], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate("nowhere")
    setup = build(gate, backend, monkeypatch)
    await consume_stream(setup, gate)
    await setup.pipeline.drain()
    row = setup.recorder.rows[0]
    assert [(r.status, r.prompt_tokens, r.completion_tokens) for r in setup.recorder.rows] == [(200, 9, 2)]
    assert [record.status for record in setup.recorder.records] == [200]
    balance = await setup.limits.balance(WHO.user_id, row.month, MONTH_BUDGET)
    assert (balance.used, balance.reserved) == (11, 0)

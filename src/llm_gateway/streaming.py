"""A stream's last steps: relay the upstream's chunks as they arrive, then settle and record.

Settlement runs when the stream ends however it ends: finished, failed upstream, or cut by
the client, in a task of its own (``ChatPipeline.spawn``) so that a disconnect, which cancels
the request, cannot cancel the charge for what was generated. The endpoint waits for it after
the last event went out (``StreamAnswer.settled``), so the request's span covers the record.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from llm_gateway import tokens
from llm_gateway.cache import chunks_to_completion
from llm_gateway.errors import GatewayError
from llm_gateway.pipeline import describe_answer, describe_chunks
from llm_gateway.providers.router import RoutedStream
from llm_gateway.schemas.core import ChunkStream

if TYPE_CHECKING:
    from llm_gateway.pipeline import Call, ChatPipeline

_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')  # set, not null
CLIENT_CLOSED = 499  # nginx's convention for "the client went away before the answer was complete"


async def relay_upstream(pipeline: ChatPipeline, call: Call, routed: RoutedStream) -> AsyncIterator[bytes]:
    """Yield chunk payloads as they arrive; the usage chunk only when the caller asked for it."""
    stream = routed.stream
    assert stream is not None
    payloads: list[bytes] = []
    finished = False
    error: GatewayError | None = None
    strip_usage = not call.chat.include_usage  # the gateway asked for usage for itself
    try:
        async for payload in _all_chunks(routed.head, stream):
            payloads.append(payload)
            if strip_usage and _usage_only(payload):
                continue
            call.record.first_byte()
            yield payload
        finished = True
    except GatewayError as exc:
        error = exc
        raise
    finally:
        # A task of its own, which a disconnect's cancellation cannot reach (``StreamAnswer.settled`` waits for it).
        call.settling = pipeline.spawn(_finish(pipeline, call, stream, payloads, finished=finished, error=error))


async def _all_chunks(head: list[bytes], stream: ChunkStream) -> AsyncIterator[bytes]:
    for payload in head:
        yield payload
    async for payload in stream:
        yield payload


async def _finish(
    pipeline: ChatPipeline,
    call: Call,
    stream: ChunkStream,
    payloads: list[bytes],
    *,
    finished: bool,
    error: GatewayError | None,
) -> None:
    """Charge what was generated (finished or not), store a whole answer, record the request."""
    await stream.aclose()
    if call.attempts:  # the answering attempt lasted until its stream ended
        last = call.attempts[-1]
        call.attempts[-1] = dataclasses.replace(last, duration=time.perf_counter() - last.start)
    usage = stream.usage
    # The answer is assembled only when something reads it: the cache, the count of an answer the
    # upstream sent no usage for, or telemetry that records contents (Helicone, TELEMETRY_RECORD_CONTENT).
    # Otherwise only the chunks that name the model or a finish reason are parsed.
    if payloads and (usage is None or pipeline.wants_answer_body or (finished and pipeline.may_store(call))):
        completion = chunks_to_completion(_parse(payloads))
        usage = usage or pipeline.estimate_usage(call, tokens.completion_text(completion))
        if finished:
            pipeline.store_answer(call, completion)
        describe_answer(call.record, completion)
    else:
        usage = usage or pipeline.estimate_usage(call, "")
        describe_chunks(call.record, _parse(describing(payloads)))
    if error is not None:
        call.record.status, call.record.error = error.status_code, error.code or type(error).__name__
    elif not finished:
        call.record.status, call.record.error = CLIENT_CLOSED, "client_closed"
    await pipeline.settle(call, usage)
    pipeline.finish_record(call)


def describing(payloads: list[bytes]) -> list[bytes]:
    """The chunks ``describe_chunks`` needs: the first (the model) and those with a finish reason."""
    return payloads[:1] + [payload for payload in payloads[1:] if _FINISH_REASON.search(payload)]


def _usage_only(payload: bytes) -> bool:
    return b'"choices":[]' in payload or b'"choices": []' in payload


def _parse(payloads: list[bytes]) -> list[dict[str, object]]:
    chunks = []
    for payload in payloads:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(chunk, dict):
            chunks.append(chunk)
    return chunks

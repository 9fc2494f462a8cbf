"""Asynchronous Helicone logging: a bounded queue drained by one background worker.

``submit()`` is all a request pays: a length check and a deque append (a full queue drops the
log and counts it). The worker serialises and sends batches of logs concurrently over the
gateway's own pooled HTTP/1.1 client (``llm_gateway.http``: a fraction of aiohttp's CPU per
POST, and the worker shares the event loop with the requests), retries connection errors and
429/5xx answers briefly, never retries a timeout (a slow Helicone would only get slower), and
gives up with a counted drop. The timeout bounds each wait (connect, first byte, each later read).

Wire format, as Helicone documents its async/manual logging API
(https://docs.helicone.ai/getting-started/integration-method/manual-logger-curl):
``POST {HELICONE_BASE_URL}/custom/v1/log`` with ``Authorization: Bearer <HELICONE_API_KEY>`` and
``{"providerRequest": {"url": "custom-model-nopath", "json": ..., "meta": {}},
"providerResponse": {"headers": {}, "status": ..., "json": ...},
"timing": {"startTime": {"seconds", "milliseconds"}, "endTime": {...}, "timeToFirstToken": ms}}``.
The user id and properties travel as headers of that POST, as Helicone's own manual logger
sends them: ``Helicone-User-Id`` (https://docs.helicone.ai/features/advanced-usage/user-metrics)
and ``Helicone-Property-<Name>`` (https://docs.helicone.ai/integrations/data/logger-sdk).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections import deque
from typing import Any

import orjson

from llm_gateway.http import HttpTransport, TimeoutException, TransportError
from llm_gateway.telemetry.metrics import GatewayMetrics
from llm_gateway.telemetry.record import RequestRecord

log = logging.getLogger(__name__)

LOG_PATH = "/custom/v1/log"
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BACKOFF = (0.2, 0.8)
_WARN_EVERY = 60.0


def helicone_log(record: RequestRecord, *, include_content: bool = True) -> dict[str, Any]:
    """The documented request body for one finished request.

    The response is always a whole ``chat.completion`` (a stream's is assembled), so the logged
    request says ``stream: false``; the ``Stream`` property tells that it was streamed.
    """
    body = record.request_body or {}
    if include_content:
        request_json = {key: value for key, value in body.items() if key != "stream_options"}
    else:
        request_json = {key: value for key, value in body.items() if isinstance(value, bool | int | float | str)}
    request_json["model"] = record.upstream_model or record.model
    request_json["stream"] = False
    response_json = _response_json(record, include_content)
    end_ns = record.start_ns + round((record.duration or 0.0) * 1e9)
    timing: dict[str, Any] = {"startTime": _stamp(record.start_ns), "endTime": _stamp(end_ns)}
    if record.ttft is not None:
        timing["timeToFirstToken"] = round(record.ttft * 1000)
    return {
        "providerRequest": {"url": "custom-model-nopath", "json": request_json, "meta": {}},
        "providerResponse": {"headers": {}, "status": record.status, "json": response_json},
        "timing": timing,
    }


def _response_json(record: RequestRecord, include_content: bool) -> dict[str, Any]:
    answer = record.response_body
    if answer is None:
        response: dict[str, Any] = {}
        if record.status >= 400:
            response["error"] = {"code": record.error, "status": record.status}
    elif include_content:
        response = dict(answer)
    else:
        response = {key: answer[key] for key in ("id", "object", "created", "model", "usage") if key in answer}
        choices = answer.get("choices")
        if isinstance(choices, list):
            response["choices"] = [
                {"index": c.get("index"), "finish_reason": c.get("finish_reason")}
                for c in choices
                if isinstance(c, dict)
            ]
    response.setdefault("model", record.response_model or record.upstream_model or record.model)
    if not isinstance(response.get("usage"), dict) and (record.prompt_tokens or record.completion_tokens):
        prompt, completion = record.prompt_tokens or 0, record.completion_tokens or 0
        response["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return response


def _stamp(unix_ns: int) -> dict[str, int]:
    milliseconds = unix_ns // 1_000_000
    return {"seconds": milliseconds // 1000, "milliseconds": milliseconds % 1000}


def helicone_headers(record: RequestRecord) -> dict[str, str]:
    """Per-log headers: the user id and the gateway's properties (the auth header is the session's)."""
    headers = {
        "Helicone-Property-Request-Id": record.request_id,
        "Helicone-Property-Model-Group": record.model,
        "Helicone-Property-Attempts": str(len(record.attempts)),
        "Helicone-Property-Stream": "true" if record.stream else "false",
    }
    if record.user_id:
        headers["Helicone-User-Id"] = record.user_id
    if record.provider:
        headers["Helicone-Property-Provider"] = record.provider
    if record.cache:
        headers["Helicone-Property-Cache"] = record.cache
    return {name: _header_value(value) for name, value in headers.items()}


def _header_lines(headers: dict[str, str]) -> bytes:
    """Per-log header lines, appended to the fixed request head (whose lines each end in CRLF).

    Safe to splice: the names are ours and every value went through ``_header_value`` (printable
    ASCII: no CR or LF can end a line early)."""
    return "".join([f"{name}: {value}\r\n" for name, value in headers.items()]).encode("latin-1")


def _header_value(value: str) -> str:
    """Header values must be printable ASCII; anything else is percent-encoded rather than dropped."""
    if value.isascii() and value.isprintable():
        return value
    return urllib.parse.quote(value, safe="")


class HeliconeLogger:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        queue_size: int = 1000,
        batch_size: int = 16,
        timeout: float = 5.0,
        retries: int = 2,
        include_content: bool = True,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._max = queue_size
        self._batch_size = max(1, batch_size)
        self._timeout = timeout
        self._retries = retries
        self._include_content = include_content
        self._metrics = metrics
        self._queue: deque[RequestRecord] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._transport: HttpTransport | None = None
        self._head = b""  # request line, Host, Authorization, Content-Type: built once in start()
        self._last_warning = -_WARN_EVERY
        self.sent = 0
        self.dropped: dict[str, int] = {}

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, record: RequestRecord) -> bool:
        """Queue one log; never blocks, never raises. False when it was dropped."""
        if self._closing or len(self._queue) >= self._max:
            self._drop("closed" if self._closing else "queue_full")
            return False
        self._queue.append(record)
        if self._metrics is not None:
            self._metrics.helicone_depth.inc()
        self._wakeup.set()
        return True

    async def start(self) -> None:
        """Open the connection pool and start the worker (inside the running loop, e.g. the lifespan).

        The pool holds at most ``batch_size`` connections: one batch is in flight at a time."""
        if self._task is not None:
            return
        self._transport = HttpTransport(self._base_url.rstrip("/"))
        fixed = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        self._head = self._transport.request_head(LOG_PATH, fixed)
        self._task = asyncio.create_task(self._run(), name="helicone-logger")

    async def aclose(self, timeout: float = 2.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, drop (and count) the rest, close the pool."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        while self._queue:
            self._queue.popleft()
            self._taken(1)
            self._drop("shutdown")
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            self._taken(len(batch))
            results = await asyncio.gather(*(self._send(record) for record in batch), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):  # a bug in _send must not end the worker
                    log.error("helicone: unexpected failure", exc_info=result)
                    self._drop("error")

    async def _send(self, record: RequestRecord) -> None:
        try:
            await self._post(record)
        except asyncio.CancelledError:  # aclose() gave up waiting: this log is lost, count it
            self._drop("shutdown")
            raise

    async def _post(self, record: RequestRecord) -> None:
        transport = self._transport
        if transport is None:
            self._drop("closed")
            return
        try:
            body = orjson.dumps(helicone_log(record, include_content=self._include_content), default=str)
            head = self._head + _header_lines(helicone_headers(record))
        except Exception:  # a record the payload cannot be built from must not stop the worker
            log.exception("helicone: cannot build the log of request %s", record.request_id)
            self._drop("invalid")
            return
        for attempt in range(self._retries + 1):
            try:
                status = await self._exchange(transport, head, body)
            except TimeoutException:
                self._fail("timeout", f"no answer within {self._timeout}s")
                return
            except TransportError as exc:  # refused, reset, cut short, or not HTTP: try again
                if attempt == self._retries:
                    self._fail("unreachable", type(exc).__name__)
                    return
            else:
                if status < 300:
                    self._sent()
                    return
                if status not in _RETRY_STATUSES or attempt == self._retries:
                    self._fail("rejected", f"status {status}")
                    return
            await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])

    async def _exchange(self, transport: HttpTransport, head: bytes, body: bytes) -> int:
        """One POST, its answer read whole (so the connection goes back to the pool); the status."""
        async with transport.post(head, body, timeout=self._timeout) as response:
            await response.read()
        return response.status

    def _sent(self) -> None:
        self.sent += 1
        if self._metrics is not None:
            self._metrics.helicone_sent.inc()

    def _taken(self, count: int) -> None:
        if self._metrics is not None:
            self._metrics.helicone_depth.dec(count)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self._metrics is not None:
            self._metrics.helicone_dropped(reason).inc()

    def _fail(self, reason: str, detail: str) -> None:
        self._drop(reason)
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:  # one warning a minute, not one per request
            self._last_warning = now
            log.warning(
                "helicone: a log was dropped (%s: %s); further drops are only counted for a while", reason, detail
            )

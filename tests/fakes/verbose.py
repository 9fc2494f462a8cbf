"""A fake OpenAI-compatible upstream that writes long answers: as many tokens as it wants, or as the request's
cap allows (as OpenAI does), for every choice (``n``); or, ``endless``, a stream that never ends by itself.

For the budget-bound tests: the gateway must send the cap it reserved, reserve every choice, and end
a stream that writes past its reservation. Real HTTP on 127.0.0.1, OpenAI's wire format.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

WORD = " tok"  # one token in o200k_base and cl100k_base
ENDLESS_CHUNK_LIMIT = 200_000  # an endless stream still stops by itself, far past any reservation under test


@dataclass
class VerboseOpenAI:
    """``wants`` completion tokens per choice; ``honours_cap``: stop at ``max_completion_tokens``/``max_tokens``."""

    wants: int = 10_000
    honours_cap: bool = True
    endless: bool = False
    send_usage: bool = True
    prompt_tokens: int = 8
    chunk_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    streamed_chunks: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VerboseOpenAI:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="fake-verbose", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(5)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    async def _serve(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _written(self, body: dict[str, Any]) -> int:
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        return min(self.wants, cap) if self.honours_cap and isinstance(cap, int) else self.wants

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        choices, written = int(body.get("n") or 1), self._written(body)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": choices * written,
            "total_tokens": self.prompt_tokens + choices * written,
        }
        head = {"id": "chatcmpl-verbose", "created": 1, "model": body["model"]}
        finish = "length" if written < self.wants else "stop"
        if not body.get("stream"):
            message = {"role": "assistant", "content": WORD * written}
            answer = {
                **head,
                "object": "chat.completion",
                "choices": [
                    {"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(choices)
                ],
                "usage": usage,
            }
            return web.json_response(answer, dumps=lambda value: orjson.dumps(value).decode())
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk: dict[str, Any] = {**head, "object": "chat.completion.chunk"}
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk["usage"] = None  # as OpenAI does: every chunk says "usage": null, the last one carries it

        async def send(choices_field: list[dict[str, Any]], **extra: Any) -> None:
            payload = {**chunk, "choices": choices_field, **extra}
            await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")
            self.streamed_chunks += 1
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)

        for i in range(choices):
            await send([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        pieces = ENDLESS_CHUNK_LIMIT if self.endless else written
        for _ in range(pieces):
            for i in range(choices):
                await send([{"index": i, "delta": {"content": WORD}, "finish_reason": None}])
        if self.endless:
            return response  # ends without a finish reason or [DONE]: a broken stream, but only after the limit
        for i in range(choices):
            await send([{"index": i, "delta": {}, "finish_reason": finish}])
        if self.send_usage:
            await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        return response

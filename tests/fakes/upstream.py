"""Fake OpenAI, Anthropic and Groq servers on 127.0.0.1, speaking the real wire formats over real HTTP.

Each ``FakeProvider`` runs aiohttp in a daemon thread with its own event loop, so synchronous tests,
async tests and a gateway under test can all talk to it; tests script it with ``push``.

The OpenAI and Groq fakes also serve ``POST <base_url>/embeddings`` (vectors from ``fake_embedding``); the
Anthropic fake, like the real API, has no embeddings endpoint and answers it with its 404. The OpenAI fake alone
serves the Responses API, ``POST /v1/responses`` (``responses_wire.py``); the others answer it with their 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from .anthropic_wire import AnthropicWire, count_tokens
from .azure_wire import AzureWire
from .bedrock_wire import BedrockWire
from .behaviours import Behaviour, Delay, Drop, Fail, Reply
from .gemini_wire import GeminiWire
from .openai_wire import OpenAIWire
from .playback import ProviderWire, json_answer, play
from .responses_wire import ResponsesWire

# Where an embeddings request goes when the provider has none (Anthropic): its 404, recorded like any request.
_NO_EMBEDDINGS_PATH = "/v1/embeddings"
# Where a Responses request goes (``<base_url>/responses``); only the OpenAI fake answers it.
_RESPONSES_PATHS = {
    "openai": "/v1/responses",
    "groq": "/openai/v1/responses",
    "anthropic": "/v1/responses",
    "azure": "/openai/v1/responses",
    "bedrock": "/v1/responses",
    "gemini": "/v1/responses",
    "vertex": "/v1/responses",
}

ProviderKind = Literal["openai", "anthropic", "groq", "azure", "bedrock", "gemini", "vertex"]
# Each kind of fake: its wire (from the API key it accepts), and the path its base URL ends in.
_KINDS: dict[str, tuple[Callable[[str], ProviderWire], str]] = {
    "openai": (lambda key: OpenAIWire("openai", key), "/v1"),
    "groq": (lambda key: OpenAIWire("groq", key), "/openai/v1"),
    "anthropic": (AnthropicWire, ""),
    "azure": (AzureWire, ""),
    "bedrock": (BedrockWire, ""),
    "gemini": (lambda key: GeminiWire("gemini", key), ""),
    "vertex": (lambda key: GeminiWire("vertex", key), ""),
}
# What count_tokens can be told to do: answer (``Reply``: the count), fail, wait, or drop the connection.
CountBehaviour = Reply | Fail | Delay | Drop

_START_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0
# In-flight handlers (a long Delay or Stall) get this long to finish at stop() before being cancelled.
_SHUTDOWN_GRACE = 0.25
# aiohttp's default (1 MiB) is below the gateway's MAX_REQUEST_BYTES; the real APIs take far more.
_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; ``body`` is the parsed JSON, or None when it was not JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


class FakeProvider:
    """One fake provider ("openai", "anthropic" or "groq") on 127.0.0.1 and a free port.

    Chat, embeddings and (OpenAI) Responses requests are authenticated and validated like the real API does
    (a rejected request consumes no behaviour), then answered by the next pushed behaviour, or the default
    (``Reply()``). They share one queue: ``push(Fail(500))`` fails the next request of any kind.
    An embeddings request renders ``Reply`` as its embeddings list (the ``Reply``'s text and token
    counts are ignored: usage is counted from the input), ``FailMidStream``/``Stall`` as that list cut or
    paused halfway, and ``StreamError`` as the plain 500; the other behaviours as for chat.
    A Responses request renders ``Reply`` as a ``response`` (or its typed events when ``stream`` is true;
    ``cache_read_tokens`` is then ``input_tokens_details.cached_tokens``) and ``StreamError`` as
    ``response.failed``; a ``previous_response_id`` it did not create (and keep: ``stored_responses``) is
    refused with ``previous_response_not_found``.
    """

    def __init__(
        self,
        kind: ProviderKind,
        *,
        api_key: str | None = None,
        base_path: str | None = None,
        refuses: tuple[str, ...] = (),
    ) -> None:
        """Options of the openai fake, to play another vendor's server: ``base_path``, its wire under another path
        than ``/v1`` (e.g. ``/api/v1``); ``refuses``, request fields it answers with 422 (as Mistral does)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown provider kind {kind!r}")
        if (base_path is not None or refuses) and kind != "openai":
            raise ValueError("base_path and refuses are options of the openai fake")
        self.kind: ProviderKind = kind
        self._api_key = api_key or f"test-{kind}-key"
        self._base_path = _KINDS[kind][1] if base_path is None else base_path
        self._wire: ProviderWire = (
            _KINDS[kind][0](self._api_key)
            if base_path is None and not refuses
            else OpenAIWire(kind, self._api_key, prefix=base_path, refuses=refuses)
        )
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._count_queue: deque[CountBehaviour] = deque()
        self._default: Behaviour = Reply()
        self._requests: list[Recorded] = []
        wire = self._wire
        self._embeddings_path = wire.embeddings_path if isinstance(wire, OpenAIWire) else _NO_EMBEDDINGS_PATH
        self._responses_wire = ResponsesWire(self._api_key) if kind == "openai" else None
        self._chat_count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- scripting ----------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def wire(self) -> ProviderWire:
        """The wire module's object, for what only one kind of fake offers (e.g. Vertex AI's token endpoint)."""
        return self._wire

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeProvider is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The base URL the official SDK of this provider expects (Anthropic's has no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}{self._base_path}"

    @property
    def env(self) -> dict[str, str]:
        """The gateway's environment variables that point it at this fake, e.g. ``OPENAI_BASE_URL``."""
        prefix = self.kind.upper()
        return {f"{prefix}_BASE_URL": self.base_url, f"{prefix}_API_KEY": self.api_key}

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each valid chat or embeddings request consumes one, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def push_count_tokens(self, *behaviours: CountBehaviour) -> None:
        """Queue behaviours for ``/v1/messages/count_tokens`` (Anthropic), apart from the chat queue (a client
        such as Claude Code counts between its messages); with none queued the count is answered."""
        with self._lock:
            self._count_queue.extend(behaviours)

    def set_default(self, behaviour: Behaviour) -> None:
        """What a chat or embeddings request gets when the queue is empty."""
        with self._lock:
            self._default = behaviour

    def reset(self) -> None:
        """Forget queued behaviours, the default and every recorded request."""
        with self._lock:
            self._queue.clear()
            self._count_queue.clear()
            self._default = Reply()
            self._requests.clear()
            self._chat_count = 0
        if self._responses_wire is not None:
            self._responses_wire.forget()

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of every request received (chat, models, unknown paths), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[Recorded]:
        """A snapshot of the chat requests only (``/chat/completions``, ``/v1/messages``, or a cloud's routes)."""
        is_chat = getattr(self._wire, "is_chat", None)
        if is_chat is not None:
            return [r for r in self.requests if is_chat(r.path)]
        return [r for r in self.requests if r.path == self._wire.chat_path]

    @property
    def embeddings_requests(self) -> list[Recorded]:
        """A snapshot of the embeddings requests (``<base_url>/embeddings``, or a cloud's routes), rejected ones
        included; for the Anthropic fake, the ``/v1/embeddings`` requests it answered with 404."""
        is_embeddings = getattr(self._wire, "is_embeddings", None)
        if is_embeddings is not None:
            return [r for r in self.requests if is_embeddings(r.path)]
        return [r for r in self.requests if r.path == self._embeddings_path]

    @property
    def responses_requests(self) -> list[Recorded]:
        """A snapshot of the Responses requests (``<base_url>/responses``), rejected ones included; for the Groq
        and Anthropic fakes, the ones they answered with 404."""
        return [r for r in self.requests if r.path == _RESPONSES_PATHS.get(self.kind)]

    @property
    def stored_responses(self) -> dict[str, Any]:
        """The ``response`` objects the OpenAI fake created and keeps (``store`` not false), by id."""
        return self._responses_wire.stored() if self._responses_wire is not None else {}

    @property
    def count_tokens_requests(self) -> list[Recorded]:
        """A snapshot of the ``/v1/messages/count_tokens`` requests (Anthropic only)."""
        return [r for r in self.requests if r.path == AnthropicWire.count_tokens_path]

    @property
    def count(self) -> int:
        """Chat requests received, rejected ones (bad key, invalid body) included; embeddings and Responses
        requests are not counted here (``len(fake.embeddings_requests)``, ``len(fake.responses_requests)``)."""
        with self._lock:
            return self._chat_count

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Listen on a free port; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, args=(loop,), name=f"fake-{self.kind}", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(sock), loop).result(_START_TIMEOUT)
        except BaseException:
            sock.close()
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the server (cancelling handlers still busy after a short grace), end the loop, join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._thread is not None else "stopped"
        return f"FakeProvider({self.kind!r}, {where})"

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        for route in getattr(self._wire, "chat_routes", (self._wire.chat_path,)):
            app.router.add_post(route, self._chat)
        if isinstance(self._wire, AnthropicWire):
            app.router.add_post(self._wire.count_tokens_path, self._count_tokens)
        if isinstance(self._wire, OpenAIWire):
            for route in getattr(self._wire, "embeddings_routes", (self._wire.embeddings_path,)):
                app.router.add_post(route, self._embeddings)
        elif hasattr(self._wire, "embeddings_routes"):  # another wire with an embeddings API of its own
            for route in self._wire.embeddings_routes:
                app.router.add_post(route, self._embeddings)
        for method, route, handler in getattr(self._wire, "extra_routes", ()):  # e.g. an OAuth token endpoint
            app.router.add_route(method, route, handler)
        if self._responses_wire is not None:
            app.router.add_post(self._responses_wire.path, self._responses)
        app.router.add_get(self._wire.models_path, self._models)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, sock).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    # -- handlers (run on the fake's loop) ----------------------------------------------------

    async def _record(self, request: web.Request, *, chat: bool) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._requests.append(Recorded(request.method, request.path, headers, body, raw))
            self._chat_count += chat
        return body

    @staticmethod
    def _auth_problem(wire: ProviderWire, request: web.Request, raw: bytes) -> tuple[int, Any] | None:
        """The wire's verdict on the request's credentials: over the whole request when it signs one (SigV4)."""
        authenticate = getattr(wire, "authenticate", None)
        if authenticate is not None:
            # The path as sent (percent-encoded): a signature covers it byte for byte.
            problem: tuple[int, Any] | None = authenticate(request.method, request.raw_path, request.headers, raw)
            return problem
        return wire.check_auth(request.headers)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._wire, chat=True)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        assert self._responses_wire is not None
        return await self._answer(request, self._responses_wire, chat=False)

    async def _answer(self, request: web.Request, wire: ProviderWire, *, chat: bool) -> web.StreamResponse:
        """A chat or Responses request: checked like the real API, then answered by the next behaviour."""
        body = await self._record(request, chat=chat)
        request_view = getattr(wire, "request_view", None)
        if request_view is not None and isinstance(body, dict):  # the model or ``stream`` said by the URL
            body = request_view(request.method, request.path, request.query, body)
        problem = self._auth_problem(wire, request, await request.read()) or wire.check_request(body, request.headers)
        if problem is not None:
            return json_answer(wire, *problem)
        with self._lock:
            behaviour = self._queue.popleft() if self._queue else self._default
        return await play(behaviour, request, wire, body)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request, chat=False)
        wire: Any = self._wire  # OpenAIWire, or a wire with ``embeddings_routes`` and the same two methods
        request_view = getattr(wire, "request_view", None)
        if request_view is not None and isinstance(body, dict):
            body = request_view(request.method, request.path, request.query, body)
        problem = self._auth_problem(wire, request, await request.read()) or wire.check_embeddings(body)
        if problem is not None:
            return json_answer(wire, *problem)
        with self._lock:
            behaviour = self._queue.popleft() if self._queue else self._default
        return await play(behaviour, request, wire, body, answer=lambda _reply: wire.embeddings(body))

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request, chat=False)
        wire = self._wire
        assert isinstance(wire, AnthropicWire)
        problem = wire.check_auth(request.headers) or wire.check_count_tokens(body, request.headers)
        if problem is not None:
            return json_answer(wire, *problem)
        with self._lock:
            behaviour: Behaviour = self._count_queue.popleft() if self._count_queue else Reply()
        while isinstance(behaviour, Delay):
            await asyncio.sleep(behaviour.seconds)
            behaviour = behaviour.then
        if isinstance(behaviour, Reply):
            return json_answer(wire, 200, {"input_tokens": count_tokens(body)})
        return await play(behaviour, request, wire, body)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, chat=False)
        problem = self._wire.check_auth(request.headers)
        if problem is not None:
            return json_answer(self._wire, *problem)
        return json_answer(self._wire, 200, self._wire.models())

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, chat=False)
        return json_answer(self._wire, *self._wire.not_found(request.method, request.path))

"""The HTTP side of the Gemini API (``type: gemini``) and Vertex AI (``type: vertex``) adapters: the same bodies
(``translate.py``, ``answer.py``, ``stream.py``, ``embed.py``), two URLs and two kinds of credentials.

Gemini: ``{base}/v1beta/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse``,
``:batchEmbedContents``) with ``x-goog-api-key``. Vertex AI: ``{origin}/v1/projects/{project}/locations/
{location}/publishers/google/models/{model}:generateContent`` (``:predict`` for embeddings) with an OAuth bearer
token from ``auth.TokenSource``. The model is in the URL, so request heads are built per model, once, and kept
(the Vertex token line is appended per request: it changes every hour).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import orjson

from llm_gateway import tokens
from llm_gateway.errors import ProviderProtocolError, UpstreamError
from llm_gateway.http import DEFAULT_BOUNDS, SSEEvent, UpstreamBounds, UpstreamResponse
from llm_gateway.providers.adapter import ErrorFields, EventStream, HttpAdapter
from llm_gateway.providers.gemini import embed
from llm_gateway.providers.gemini.answer import from_gemini_response
from llm_gateway.providers.gemini.auth import RotatingMask, TokenSource, load_credentials
from llm_gateway.providers.gemini.params import dropped_params
from llm_gateway.providers.gemini.stream import GeminiStreamTranslator
from llm_gateway.providers.gemini.translate import to_gemini_request
from llm_gateway.providers.gemini.wire import (
    MAX_EMBED_BATCH,
    RETRYABLE_REASONS,
    RETRYABLE_STATUSES,
    error_message,
    error_object,
    error_reasons,
    model_path,
    vertex_origin,
    vertex_prefix,
)
from llm_gateway.schemas.core import Completion, Usage
from llm_gateway.settings import ProviderConfig

T = TypeVar("T")
MAX_CACHED_MODELS = 64  # request heads kept per model; a deployment list names a handful
EMBED_CONCURRENCY = 4  # embeddings calls in flight for one request split into batches


class ModelHeads(NamedTuple):
    chat: bytes
    stream: bytes
    embed: bytes


class GoogleAdapter(HttpAdapter):
    """What the Gemini API and Vertex AI adapters share: everything but the paths and the credentials."""

    embed_method = "batchEmbedContents"

    def __init__(
        self, name: str, config: ProviderConfig, bounds: UpstreamBounds, *, headers: dict[str, str], secret: str
    ) -> None:
        super().__init__(name, config, bounds, path="/", headers=headers, secret=secret)
        self._heads: dict[str, ModelHeads] = {}

    def model_prefix(self, model: str) -> str:
        """The path up to ``:method`` for ``model``."""
        raise NotImplementedError

    async def auth_line(self, timeout: float) -> bytes:
        """A header line (``name: value\\r\\n``) added to every request head, or b""."""
        return b""

    def heads(self, model: str) -> ModelHeads:
        heads = self._heads.get(model)
        if heads is None:
            prefix = self.model_prefix(model)
            heads = ModelHeads(
                self.request_head(f"{prefix}:generateContent"),
                self.request_head(f"{prefix}:streamGenerateContent?alt=sse", stream=True),
                self.request_head(f"{prefix}:{self.embed_method}"),
            )
            if len(self._heads) >= MAX_CACHED_MODELS:
                self._heads.clear()
            self._heads[model] = heads
        return heads

    # -- chat ------------------------------------------------------------------------------------

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        payload = orjson.dumps(to_gemini_request(body, model))
        head = self.heads(model).chat + await self.auth_line(timeout)
        parsed, _, status = await self.post_json(payload, timeout=timeout, head=head)
        if "candidates" not in parsed and "promptFeedback" not in parsed:
            raise ProviderProtocolError(
                f"{self.name} answered without candidates", provider=self.name, upstream_status=status
            )
        return Completion(from_gemini_response(parsed, model=model, created=int(time.time())))

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> GeminiStream:
        payload = orjson.dumps(to_gemini_request(body, model))
        head = self.heads(model).stream + await self.auth_line(timeout)
        options = body.get("stream_options")
        n = body.get("n")
        translator = GeminiStreamTranslator(
            model=model,
            created=int(time.time()),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            candidates=n if isinstance(n, int) and not isinstance(n, bool) else 1,
            provider=self.name,
        )
        response = await self.open_stream(payload, timeout=timeout, head=head)
        return GeminiStream(self, response, deadline, translator)

    def dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        return dropped_params(body, model)

    def error_fields(self, parsed: Any, headers: Mapping[str, str]) -> ErrorFields:
        """``{"error": {"code", "message", "status", "details"}}``: an invalid key (400 ``API_KEY_INVALID``) and
        Google's statuses for our side failing are retryable, whatever their HTTP status."""
        error = error_object(parsed)
        if error is None:
            return ErrorFields(None)
        status = error.get("status") if isinstance(error.get("status"), str) else None
        ours = bool(error_reasons(error) & RETRYABLE_REASONS) or status in RETRYABLE_STATUSES
        return ErrorFields(
            error_message(parsed, f"{self.name} returned an error"),
            code=status.lower() if status else None,
            retryable=True if ours else None,
        )

    # -- embeddings ------------------------------------------------------------------------------

    def embeddings_dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        return embed.dropped_params(body)

    async def embeddings(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        texts = embed.embedding_texts(body)
        size = embed.dimensions(body)
        base64_format = body.get("encoding_format") == "base64"
        vectors, counted = await self.embed_texts(texts, model, size, timeout=timeout)
        return Completion(embed.openai_embeddings(vectors, model, counted, base64_format=base64_format))

    async def embed_texts(
        self, texts: list[str], model: str, size: int | None, *, timeout: float
    ) -> tuple[list[list[float]], int]:
        """Gemini's ``batchEmbedContents`` (100 texts a call); tokens are the gateway's own count."""
        batches = [texts[i : i + MAX_EMBED_BATCH] for i in range(0, len(texts), MAX_EMBED_BATCH)]

        async def one(batch: list[str]) -> list[list[float]]:
            request = embed.batch_embed_request(batch, model, size)
            parsed, status = await self._embed_call(request, model, timeout)
            vectors = embed.batch_embed_vectors(parsed, len(batch))
            if vectors is None:
                raise self._bad_embeddings(status)
            return vectors

        results = await self.gather([functools.partial(one, batch) for batch in batches])
        counted = await _count_tokens(texts, model)
        return [vector for result in results for vector in result], counted

    async def _embed_call(self, request: dict[str, Any], model: str, timeout: float) -> tuple[dict[str, Any], int]:
        head = self.heads(model).embed + await self.auth_line(timeout)
        parsed, _, status = await self.post_json(orjson.dumps(request), timeout=timeout, head=head)
        return parsed, status

    def _bad_embeddings(self, status: int) -> ProviderProtocolError:
        return ProviderProtocolError(
            f"{self.name} answered embeddings without the vectors asked for", provider=self.name, upstream_status=status
        )

    @staticmethod
    async def gather(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run ``calls`` at most ``EMBED_CONCURRENCY`` at a time; the first failure cancels the rest."""
        if len(calls) == 1:
            return [await calls[0]()]
        gate = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def gated(call: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await call()

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(gated(call)) for call in calls]
        except ExceptionGroup as failures:
            first = failures.exceptions[0]
            raise first if isinstance(first, UpstreamError) else failures from None
        return [task.result() for task in tasks]


async def _count_tokens(texts: list[str], model: str) -> int:
    def count() -> int:
        return sum(tokens.count_text_tokens(text, model) for text in texts)

    if tokens.estimate_inline(sum(map(len, texts)), model):
        return count()
    return await asyncio.to_thread(count)


class GeminiProvider(GoogleAdapter):
    """The Gemini API (``generativelanguage.googleapis.com``), keyed by ``x-goog-api-key``."""

    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        secret = config.api_key.get_secret_value() if config.api_key else ""
        headers = {"x-goog-api-key": secret, "Content-Type": "application/json"}
        super().__init__(name, config, bounds, headers=headers, secret=secret)

    def model_prefix(self, model: str) -> str:
        return f"/v1beta/{model_path(model)}"


class VertexProvider(GoogleAdapter):
    """Vertex AI's ``publishers/google`` models, with OAuth access tokens from google-auth's credentials."""

    embed_method = "predict"

    def __init__(self, name: str, config: ProviderConfig, bounds: UpstreamBounds = DEFAULT_BOUNDS) -> None:
        if not config.project or not config.location:
            raise ValueError(f"provider {name}: type vertex needs a project and a location")
        credentials = load_credentials(name, config.credentials_file)
        origin = config.base_url or vertex_origin(config.location)
        config = config.model_copy(update={"base_url": origin})
        super().__init__(name, config, bounds, headers={"Content-Type": "application/json"}, secret="")
        self._prefix = vertex_prefix(config.project or "", config.location or "")
        self.mask = mask = RotatingMask(self.mask)
        self.tokens = TokenSource(name, credentials, mask)

    def model_prefix(self, model: str) -> str:
        return f"{self._prefix}/{model_path(model)}"

    async def auth_line(self, timeout: float) -> bytes:
        return b"Authorization: Bearer %s\r\n" % (await self.tokens.token(timeout)).encode("latin-1")

    async def embed_texts(
        self, texts: list[str], model: str, size: int | None, *, timeout: float
    ) -> tuple[list[list[float]], int]:
        """Vertex AI's ``:predict``: one text a call for ``gemini-embedding-*`` (its limit), else up to 250;
        tokens as Vertex counts them (``statistics.token_count``)."""
        per_call = 1 if "gemini-embedding" in model else 250
        batches = [texts[i : i + per_call] for i in range(0, len(texts), per_call)]

        async def one(batch: list[str]) -> tuple[list[list[float]], int]:
            parsed, status = await self._embed_call(embed.predict_request(batch, size), model, timeout)
            read = embed.predict_vectors(parsed, len(batch))
            if read is None:
                raise self._bad_embeddings(status)
            return read

        results = await self.gather([functools.partial(one, batch) for batch in batches])
        return [vector for vectors, _ in results for vector in vectors], sum(counted for _, counted in results)

    async def aclose(self) -> None:
        self.tokens.close()
        await super().aclose()


class GeminiStream(EventStream):
    """Gemini's SSE events -> OpenAI chunk payloads, translated event by event as they arrive."""

    def __init__(
        self, adapter: HttpAdapter, response: UpstreamResponse, deadline: float, translator: GeminiStreamTranslator
    ) -> None:
        super().__init__(adapter, response, deadline)
        self._translator = translator

    @property
    def usage(self) -> Usage | None:
        return Usage.from_openai(self._translator.usage)

    def translate(self, event: SSEEvent) -> list[bytes]:
        payloads = [orjson.dumps(chunk) for chunk in self._translator.feed(self.parse(event.data))]
        self.finished = self._translator.finished
        return payloads

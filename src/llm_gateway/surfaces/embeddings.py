"""The Embeddings surface (``POST /v1/embeddings``): OpenAI's format, in and out, never streamed.

Only deployments whose adapter has an embeddings API (``providers.base.Embeddings``: the
OpenAI-compatible ones) can serve it: any other is skipped, and a group left with none is 400
``model_not_supported``. The request is passed through with only ``model`` replaced. Nothing is
generated, so nothing but the prompt is reserved or charged. Cached answers keep float vectors as
base64 float32 (``to_cache``): 6.3 KB for a 1,536-float answer instead of 15.5 KB (README).
"""

from __future__ import annotations

import asyncio
import base64
from array import array
from typing import Any

from llm_gateway import tokens
from llm_gateway.cache import cache_key
from llm_gateway.errors import InvalidRequest, ModelNotSupported
from llm_gateway.providers.base import Embeddings, Provider
from llm_gateway.schemas.core import ChunkStream, Completion, Usage
from llm_gateway.schemas.embeddings import EmbeddingsRequest
from llm_gateway.surfaces.base import StreamObserver, answer_model

_PACKED = "embedding_f32"  # a cached vector: base64 of its little-endian float32 values


class EmbeddingsSurface:
    name = "embeddings"
    route = "/v1/embeddings"
    operation = "embeddings"

    async def prompt_tokens(self, request: EmbeddingsRequest) -> int:
        texts = [item for item in request.inputs if isinstance(item, str)]
        counted = sum(len(item) for item in request.inputs if isinstance(item, list))  # token arrays count as sent
        if tokens.estimate_inline(sum(map(len, texts)), request.model):
            return counted + _count(texts, request.model)
        return counted + await asyncio.to_thread(_count, texts, request.model)

    def completion_cap(self, request: EmbeddingsRequest) -> int | None:
        return 0  # nothing is generated

    def choices(self, request: EmbeddingsRequest) -> int:
        return 1

    def upstream_body(self, request: EmbeddingsRequest, cap: int | None) -> dict[str, Any]:
        return request.body

    def cache_key(self, request: EmbeddingsRequest, scope: str | None) -> str | None:
        return cache_key(request.body, group=f"embeddings:{request.model}", scope_id=scope)

    def storable(self, answer: dict[str, Any], *, capped_by_gateway: bool) -> bool:
        data = answer.get("data")
        return isinstance(data, list) and bool(data) and all(isinstance(item, dict) for item in data)

    def to_cache(self, answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "data": [_pack(item) for item in answer["data"]]}

    def from_cache(self, stored: dict[str, Any]) -> dict[str, Any]:
        return {**stored, "data": [_unpack(item) for item in stored["data"]]}

    def replay(self, stored: dict[str, Any], request: EmbeddingsRequest) -> list[bytes]:
        raise InvalidRequest("Embeddings are not streamed.")

    async def answer(
        self, provider: Provider, model: str, request: EmbeddingsRequest, body: dict[str, Any], *, timeout: float
    ) -> Completion:
        if not isinstance(provider, Embeddings):
            raise ModelNotSupported("embeddings", provider=provider.name)
        return await provider.embeddings(body, model, timeout=timeout)

    async def open_stream(
        self,
        provider: Provider,
        model: str,
        request: EmbeddingsRequest,
        body: dict[str, Any],
        *,
        timeout: float,
        deadline: float,
    ) -> ChunkStream:
        raise InvalidRequest("Embeddings are not streamed.")

    def has_content(self, item: bytes) -> bool:
        return True

    def dropped_params(
        self, provider: Provider, model: str, request: EmbeddingsRequest, body: dict[str, Any]
    ) -> tuple[str, ...]:
        if not isinstance(provider, Embeddings):
            return ()
        return provider.embeddings_dropped_params(body, model)  # () for a passthrough

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        usage = answer.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return Usage(prompt, 0) if isinstance(prompt, int) and not isinstance(prompt, bool) else None

    def answer_text(self, answer: dict[str, Any]) -> str:
        return ""  # nothing generated: the estimate of the prompt is the charge when no usage came

    def response_model(self, answer: dict[str, Any]) -> str | None:
        return answer_model(answer)

    def finish_reasons(self, answer: dict[str, Any]) -> tuple[str, ...]:
        return ()

    def read_item(
        self, item: bytes, observer: StreamObserver, parsed: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        return None  # never streamed

    def relay_item(self, item: bytes, parsed: dict[str, Any] | None, request: EmbeddingsRequest) -> bytes | None:
        return item

    def assemble(self, items: list[bytes]) -> dict[str, Any]:
        raise InvalidRequest("Embeddings are not streamed.")


def _count(texts: list[str], model: str) -> int:
    return sum(tokens.count_text_tokens(text, model) for text in texts)


def _pack(item: dict[str, Any]) -> dict[str, Any]:
    vector = item.get("embedding")
    if not isinstance(vector, list):
        return item  # base64 already: kept as it came
    try:
        packed = array("f", vector)  # C speed; refuses anything but numbers
    except (TypeError, OverflowError):
        return item
    data = packed.tobytes() if _LITTLE_ENDIAN else _swapped(packed)
    return {**{k: v for k, v in item.items() if k != "embedding"}, _PACKED: base64.b64encode(data).decode()}


def _unpack(item: dict[str, Any]) -> dict[str, Any]:
    packed = item.get(_PACKED)
    if not isinstance(packed, str):
        return item
    vector = array("f")
    vector.frombytes(base64.b64decode(packed))
    if not _LITTLE_ENDIAN:  # pragma: no cover
        vector.byteswap()
    return {**{k: v for k, v in item.items() if k != _PACKED}, "embedding": vector.tolist()}


def _swapped(values: array[float]) -> bytes:  # pragma: no cover - big-endian hosts
    copy = array("f", values)
    copy.byteswap()
    return copy.tobytes()


_LITTLE_ENDIAN = array("H", [1]).tobytes() == b"\x01\x00"

"""OpenAI's embeddings request and answer <-> Gemini's ``:batchEmbedContents`` and Vertex AI's ``:predict``.

Gemini takes text only: token arrays are a feature the deployment lacks (``UnsupportedFeature``). Gemini reports
no token counts for embeddings, so its answers carry the gateway's own count (``tokens.count_text_tokens``, the
number the gateway would charge anyway); Vertex AI's ``:predict`` reports each input's ``token_count``, summed.
``encoding_format: base64`` is honoured here (little-endian float32, as OpenAI sends it).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.providers.gemini.wire import model_path


def embedding_texts(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise InvalidRequest("'input' must be a string or a non-empty array of strings", param="input")
    if not all(isinstance(item, str) for item in items):
        raise UnsupportedFeature("token-array input (send text)", param="input")
    if any(not item for item in items):
        raise InvalidRequest("'input' must not contain empty strings", param="input")
    return items


def dropped_params(body: dict[str, Any]) -> tuple[str, ...]:
    """What Google's embeddings APIs have no field for: the caller's ``user`` (an end-user id for abuse tracking)."""
    return ("user",) if body.get("user") is not None else ()


def dimensions(body: dict[str, Any]) -> int | None:
    value = body.get("dimensions")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions")
    return value


def batch_embed_request(texts: list[str], model: str, size: int | None) -> dict[str, Any]:
    """``{"requests": [{"model": "models/M", "content": {"parts": [{"text"}]}, "outputDimensionality"}]}``."""
    name = model_path(model)
    requests: list[dict[str, Any]] = []
    for text in texts:
        request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if size is not None:
            request["outputDimensionality"] = size
        requests.append(request)
    return {"requests": requests}


def batch_embed_vectors(answer: dict[str, Any], expected: int) -> list[list[float]] | None:
    """``{"embeddings": [{"values": [...]}, ...]}`` -> the vectors, or None when malformed or short."""
    embeddings = answer.get("embeddings")
    if not isinstance(embeddings, list) or len(embeddings) != expected:
        return None
    vectors = [item.get("values") if isinstance(item, dict) else None for item in embeddings]
    return vectors if all(isinstance(vector, list) for vector in vectors) else None  # type: ignore[return-value]


def predict_request(texts: list[str], size: int | None) -> dict[str, Any]:
    """Vertex AI's ``{"instances": [{"content"}], "parameters": {"outputDimensionality"}}``."""
    request: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
    if size is not None:
        request["parameters"] = {"outputDimensionality": size}
    return request


def predict_vectors(answer: dict[str, Any], expected: int) -> tuple[list[list[float]], int] | None:
    """``{"predictions": [{"embeddings": {"values", "statistics": {"token_count"}}}]}`` -> (vectors, tokens)."""
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != expected:
        return None
    vectors: list[list[float]] = []
    counted = 0
    for prediction in predictions:
        embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
        values = embeddings.get("values") if isinstance(embeddings, dict) else None
        if not isinstance(values, list):
            return None
        vectors.append(values)
        statistics = embeddings.get("statistics") if isinstance(embeddings, dict) else None
        count = statistics.get("token_count") if isinstance(statistics, dict) else None
        counted += int(count) if isinstance(count, int | float) and not isinstance(count, bool) else 0
    return vectors, counted


def openai_embeddings(
    vectors: list[list[float]], model: str, prompt_tokens: int, *, base64_format: bool
) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": _packed(vector) if base64_format else vector}
        for i, vector in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _packed(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

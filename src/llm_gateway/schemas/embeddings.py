"""OpenAI's Embeddings API: the request check the route runs (by hand, for speed), and the pydantic models that
only describe it in ``/openapi.json``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.openai import load_json_object

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


@dataclass(slots=True)
class EmbeddingsRequest:
    """A validated embeddings request. ``inputs``: the input as a list (a string or token array is one item)."""

    body: dict[str, Any]
    model: str
    inputs: list[Any]
    stream: bool = False


def parse_embeddings_request(raw: bytes) -> EmbeddingsRequest:
    """Check what the gateway reads (and what OpenAI refuses before any work); the rest passes through."""
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter (a non-empty string).", param="model")
    inputs = _inputs(body.get("input"))
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise InvalidRequest("'dimensions' must be an integer of at least 1.", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    return EmbeddingsRequest(body=body, model=model, inputs=inputs)


def _inputs(value: Any) -> list[Any]:
    """A string, a token array, or a list of either: non-empty, at most ``MAX_INPUTS``."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be empty.", param="input")
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' must be a non-empty string, array of strings, array of tokens or array of token arrays.",
            param="input",
        )
    if all(_is_token(item) for item in value):
        return [value]  # one token array
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} items.", param="input")
    for index, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"'input[{index}]' must not be empty.", param=f"input[{index}]")
        elif not (isinstance(item, list) and item and all(_is_token(token) for token in item)):
            raise InvalidRequest(
                f"'input[{index}]' must be a non-empty string or a non-empty array of tokens.", param=f"input[{index}]"
            )
    return value


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- Documentation-only models (OpenAPI) -------------------------------------------------------


class CreateEmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Fields not listed pass through to the upstream."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="A model group, a provider/model name, or a bare provider model")
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage | None = None

"""The embeddings surface's pure parts: the request check (400 before any upstream call) and the compact cache
entry (float vectors kept as base64 float32, given back as the same float32 values)."""

from __future__ import annotations

import random
import struct
from typing import Any

import orjson
import pytest

from llm_gateway.cache.entry import encode_entry
from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.embeddings import MAX_INPUTS, parse_embeddings_request
from llm_gateway.surfaces.embeddings import EmbeddingsSurface

SURFACE = EmbeddingsSurface()


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "text-embedding-3-small", "input": "hello", **fields})


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),  # one token array
        ([[1, 2], [3]], [[1, 2], [3]]),
        (["a", [1, 2]], ["a", [1, 2]]),
    ],
)
def test_every_input_shape_openai_takes_is_accepted_in_order(value: Any, inputs: list[Any]) -> None:
    assert parse_embeddings_request(body(input=value)).inputs == inputs


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", ""]}, "input[1]"),
        ({"input": ["a", []]}, "input[1]"),
        ({"input": ["a", [1, "x"]]}, "input[1]"),
        ({"input": 5}, "input"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, "input"),
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": True}, "dimensions"),
        ({"user": 3}, "user"),
        ({"model": ""}, "model"),
    ],
)
def test_what_openai_refuses_is_400_naming_it(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_embeddings_request(body(**fields))
    assert refused.value.param == param


def answer(vectors: list[list[float]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


def float32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def test_a_cached_answer_gives_back_the_same_float32_vectors() -> None:
    rng = random.Random(7)
    vectors = [[float32(rng.uniform(-1, 1)) for _ in range(1536)] for _ in range(3)]
    original = answer(vectors)
    stored = SURFACE.to_cache(original)
    assert all("embedding" not in item for item in stored["data"])  # packed
    assert SURFACE.from_cache(orjson.loads(orjson.dumps(stored))) == original


def test_base64_answers_are_cached_as_they_came() -> None:
    original = answer([])
    original["data"] = [{"object": "embedding", "index": 0, "embedding": "AACAPw=="}]
    assert SURFACE.from_cache(SURFACE.to_cache(original)) == original


def test_a_cached_1536_float_answer_is_a_fraction_of_its_json() -> None:
    """The README quotes these sizes (the entry bytes, as ``cache.entry.encode_entry`` stores them)."""
    rng = random.Random(11)
    original = answer([[float32(rng.uniform(-0.1, 0.1)) for _ in range(1536)]])
    as_json = len(encode_entry(original))
    compact = len(encode_entry(SURFACE.to_cache(original)))
    print(f"\n1,536-float answer: {as_json} bytes stored as JSON floats, {compact} bytes packed")
    assert compact < as_json / 2

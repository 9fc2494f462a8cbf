"""Stored entries: orjson bytes, deflated only when it pays; anything unreadable is a miss."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest

from llm_gateway.cache import decode_entry, encode_entry, is_complete
from llm_gateway.cache.entry import COMPRESS_MIN_BYTES, DEFLATED, PLAIN

PROSE = (
    "A response cache saves the upstream call when the same question comes again. The key holds every "
    "field that can change the answer and the user it belongs to, so that nobody reads another's answer. "
)


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 346,
            "total_tokens": 1463,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }


def test_small_answers_are_stored_plain() -> None:
    small = completion("Hello!")
    blob = encode_entry(small)
    assert blob[:1] == PLAIN and len(blob) < COMPRESS_MIN_BYTES
    assert blob[1:] == orjson.dumps(small)
    assert decode_entry(blob) == small


def test_a_typical_answer_is_deflated_to_about_half() -> None:
    typical = completion((PROSE * 8)[:1500])  # ~1,500 characters, a few paragraphs of answer
    raw = orjson.dumps(typical)
    blob = encode_entry(typical)
    assert blob[:1] == DEFLATED
    assert decode_entry(blob) == typical
    # repetitive test prose compresses better than real text (~55% measured on DESIGN.md prose)
    assert len(blob) < 0.7 * len(raw)


def test_incompressible_answers_stay_plain() -> None:
    noise = completion(zlib.compress(bytes(range(256)) * 8, 9).hex())  # hex of deflated data: little to gain
    blob = encode_entry(noise)
    assert len(blob) <= len(orjson.dumps(noise)) + 1
    assert decode_entry(blob) == noise


def test_the_entry_is_a_snapshot() -> None:
    answer = completion("Hello!")
    blob = encode_entry(answer)
    answer["choices"][0]["message"]["content"] = "changed"
    decoded = decode_entry(blob)
    assert decoded is not None and decoded["choices"][0]["message"]["content"] == "Hello!"


@pytest.mark.parametrize(
    "blob", [b"", b"x{}", b"j{not json", b"j[1, 2]", DEFLATED + b"not deflate", DEFLATED + zlib.compress(b"[]")]
)
def test_unreadable_entries_are_none(blob: bytes) -> None:
    assert decode_entry(blob) is None


def test_only_complete_answers_may_be_stored() -> None:
    assert is_complete(completion("Hello!"))
    unfinished = completion("Hel")
    unfinished["choices"][0]["finish_reason"] = None
    assert not is_complete(unfinished)
    assert not is_complete({**completion("x"), "choices": []})
    assert not is_complete({"error": {"message": "boom"}})

"""Token estimates: offline encoders from the shipped BPE files, OpenAI's chat framing, and the fallback."""

from __future__ import annotations

import gzip
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
import tiktoken.load

from llm_gateway import tokens

# The OpenAI cookbook's example ("How to count tokens with tiktoken"), whose counts the API confirmed:
# 129 prompt tokens for gpt-3.5-turbo / gpt-4, 124 for gpt-4o / gpt-4o-mini.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain "
        "English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased "
        "leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's downloader must never be reached: the gateway has no internet."""

    def refuse(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-3-5-haiku-latest", "cl100k_base"),
        ("llama-3.1-8b-instant", "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_encoding_per_model_family(model: str, name: str) -> None:
    assert tokens.encoding_name_for(model) == name


def test_encoders_are_exact_and_built_offline_once() -> None:
    o200k, cl100k = tokens.encoding("o200k_base"), tokens.encoding("cl100k_base")
    assert o200k is not None and cl100k is not None
    assert o200k.encode_ordinary("hello world") == [24912, 2375]
    assert cl100k.encode_ordinary("hello world") == [15339, 1917]
    assert tokens.encoding("o200k_base") is o200k
    assert tokens.preload() == {"o200k_base": True, "cl100k_base": True}


def test_special_token_text_counts_as_text() -> None:
    assert tokens.count_text_tokens("<|endoftext|>", "gpt-4o") > 1


@pytest.mark.parametrize(("model", "expected"), [("gpt-4", 129), ("gpt-3.5-turbo", 129), ("gpt-4o", 124)])
def test_chat_framing_matches_openai(model: str, expected: int) -> None:
    assert tokens.estimate_prompt_tokens({"model": model, "messages": COOKBOOK_MESSAGES}) == expected


def test_parts_tools_and_tool_calls_add_up() -> None:
    text_only = tokens.estimate_prompt_tokens({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})
    assert text_only == 3 + 1 + 1 + 3  # framing + role + "Hi" + reply priming
    parts = [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}}]
    with_image = tokens.estimate_prompt_tokens({"model": "gpt-4o", "messages": [{"role": "user", "content": parts}]})
    assert with_image == text_only + tokens.IMAGE_TOKENS_LOW

    with_tool = tokens.estimate_prompt_tokens(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER_TOOL]}
    )
    assert 30 < with_tool - text_only < 80
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    with_call = tokens.estimate_prompt_tokens({"model": "gpt-4o", "messages": [assistant]})
    assert with_call > 3 + 3 + 5


def test_completion_tokens() -> None:
    assert tokens.count_completion_tokens("", "gpt-4o") == 0
    assert tokens.count_completion_tokens("Hello! How can I help you today?", "gpt-4o-mini") == 9


async def test_large_prompts_are_counted_off_the_loop_with_the_same_result() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "lorem ipsum dolor " * 5000}]}
    assert await tokens.estimate_prompt_tokens_async(body) == tokens.estimate_prompt_tokens(body)


def test_without_bpe_files_the_estimate_errs_high(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "bpe_file", lambda name: None)
    text = "The quick brown fox jumps over the lazy dog. Ünïcödé 你好"
    assert tokens.count_text_tokens(text, "gpt-4o") == math.ceil(len(text.encode()) / 3)
    monkeypatch.undo()
    assert tokens.count_text_tokens(text, "gpt-4o") < math.ceil(len(text.encode()) / 3)


def test_a_tampered_bpe_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "o200k_base.tiktoken.gz"
    fake.write_bytes(gzip.compress(b"aGk= 0\n"))
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "bpe_file", lambda name: fake)
    assert tokens.encoding("o200k_base") is None
    assert tokens.count_text_tokens("hi", "gpt-4o") == 1


def test_a_repeated_text_is_counted_once_and_gets_the_same_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """System prompts and earlier turns come back with every request: their counts are kept, bounded."""
    encoder = tokens.encoding(tokens.O200K)
    assert encoder is not None
    text = "You are a careful assistant. " * 20 + uuid.uuid4().hex
    calls: list[str] = []
    real = type(encoder).encode_ordinary

    def counting(self: Any, value: str) -> list[int]:
        calls.append(value)
        return real(self, value)

    monkeypatch.setattr(type(encoder), "encode_ordinary", counting)
    first = tokens.count_text_tokens(text, "gpt-4o")
    again = tokens.count_text_tokens("".join(list(text)), "gpt-4o")  # an equal string, not the same object
    assert first == again == len(real(encoder, text))
    assert calls == [text]


def test_the_count_cache_is_bounded_in_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "COUNT_CACHE_CHARS", 1000)
    monkeypatch.setattr(tokens, "_counts", {})
    monkeypatch.setattr(tokens, "_counted_chars", 0)
    for index in range(50):
        tokens.count_text_tokens(f"{index:03d}" + "x" * 97, "gpt-4o")
        assert sum(len(text) for _, text in tokens._counts) <= 1000
    assert tokens._counts  # it keeps working after starting again

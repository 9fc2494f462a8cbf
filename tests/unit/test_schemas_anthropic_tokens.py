"""The prompt estimate of a Messages body: close to tiktoken's count of the text it holds, high rather than
low, and fixed costs for what is not text."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway import tokens
from llm_gateway.schemas.anthropic_tokens import (
    DOCUMENT_TOKENS,
    IMAGE_TOKENS,
    TOOLS_SYSTEM_PROMPT,
    estimate_messages_tokens,
    estimate_messages_tokens_async,
)

MODEL = "claude-sonnet-4-5"
PROSE = "The quick brown fox jumps over the lazy dog, and then it naps under the old oak tree. " * 40
CODE = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n" * 30
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
          "required": ["city"]}  # fmt: skip

BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "plain": ({"messages": [{"role": "user", "content": PROSE}]}, PROSE),
    "system and turns": (
        {"system": [{"type": "text", "text": PROSE}],
         "messages": [{"role": "user", "content": [{"type": "text", "text": CODE}]},
                      {"role": "assistant", "content": "It is recursive."},
                      {"role": "user", "content": "Make it faster."}]},
        PROSE + CODE + "It is recursive.Make it faster.",
    ),
    "tools": (
        {"tools": [{"name": "get_weather", "description": PROSE, "input_schema": SCHEMA}],
         "messages": [{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": [
                          {"type": "thinking", "thinking": CODE, "signature": "c2ln"},
                          {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                    "content": [{"type": "text", "text": PROSE}]}]}]},
        "get_weather" + PROSE + '{"type":"object"}' + "Weather in Paris?" + CODE + 'get_weather{"city":"Paris"}'
        + PROSE,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", BODIES)
def test_within_a_sane_factor_of_tiktoken_on_the_text(name: str) -> None:
    body, text = BODIES[name]
    exact = tokens.count_text_tokens(text, MODEL)
    estimate = estimate_messages_tokens(body, MODEL)
    assert exact <= estimate <= 1.2 * exact + 450  # framing, and the tool-use system prompt


def test_images_and_documents_cost_a_fixed_amount() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "B" * 100_000}}
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": PROSE}}
    base = estimate_messages_tokens({"messages": [{"role": "user", "content": []}]}, MODEL)

    def cost(*blocks: dict[str, Any]) -> int:
        return estimate_messages_tokens({"messages": [{"role": "user", "content": list(blocks)}]}, MODEL) - base

    assert cost(image) == IMAGE_TOKENS
    assert cost(pdf) == DOCUMENT_TOKENS
    assert cost(image, {"type": "tool_result", "tool_use_id": "t", "content": [image]}) == 2 * IMAGE_TOKENS
    assert cost(text_doc) == tokens.count_text_tokens(PROSE, MODEL)
    assert cost({"type": "redacted_thinking", "data": "Z" * 10_000}) == 0


def test_server_tools_count_their_definition() -> None:
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    without = estimate_messages_tokens({"messages": [{"role": "user", "content": "Hi"}]}, MODEL)
    with_tool = estimate_messages_tokens({"messages": [{"role": "user", "content": "Hi"}], "tools": [tool]}, MODEL)
    assert with_tool - without > TOOLS_SYSTEM_PROMPT


async def test_the_async_estimate_is_the_same() -> None:
    for body, _ in BODIES.values():
        assert await estimate_messages_tokens_async(body, MODEL) == estimate_messages_tokens(body, MODEL)
    big = {"messages": [{"role": "user", "content": PROSE * 20}]}  # past OFFLOAD_CHARS: counted in a thread
    assert await estimate_messages_tokens_async(big, MODEL) == estimate_messages_tokens(big, MODEL)

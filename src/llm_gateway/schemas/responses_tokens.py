"""The prompt-token estimate of a Responses request, the twin of ``tokens.estimate_prompt_tokens`` for chat:
what the reservation holds before the call. The continued conversation (``previous_response_id``) is part
of the prompt, as the upstream reads it; settlement charges what the provider reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from llm_gateway.tokens import (
    IMAGE_TOKENS,
    IMAGE_TOKENS_LOW,
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_TOOL,
    TOOLS_FRAMING,
    count_text_tokens,
    estimate_inline,
)

_TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}


async def estimate_responses_tokens_async(body: Mapping[str, Any], history: Sequence[Any], model: str) -> int:
    """Prompt tokens of ``history`` then the body's input, instructions, tools and schema; large prompts
    (and encoders not yet built) are counted off the event loop."""
    texts, fixed = responses_prompt_texts(body, history)
    if estimate_inline(sum(len(text) for text in texts), model):
        return _count(texts, fixed, model)
    return await asyncio.to_thread(_count, texts, fixed, model)


def _count(texts: Iterable[str], fixed: int, model: str) -> int:
    return fixed + sum(count_text_tokens(text, model) for text in texts)


def responses_prompt_texts(body: Mapping[str, Any], history: Sequence[Any]) -> tuple[list[str], int]:
    """(every piece of text the model reads, fixed tokens of framing and images). Never raises on a body
    ``parse_responses_request`` accepted."""
    texts: list[str] = []
    fixed = REPLY_PRIMING
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        texts.append(instructions)
        fixed += TOKENS_PER_MESSAGE
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in (*history, *(items if isinstance(items, list) else ())):
        if isinstance(item, Mapping):
            fixed += TOKENS_PER_MESSAGE + _item(item, texts)
    tools = [tool for tool in body.get("tools") or () if isinstance(tool, Mapping)]
    if tools:
        texts += [orjson.dumps(tool).decode() for tool in tools]
        fixed += TOKENS_PER_TOOL * len(tools) + TOOLS_FRAMING
    text = body.get("text")
    schema = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(schema, Mapping) and schema.get("type") == "json_schema":
        texts.append(orjson.dumps(schema.get("schema")).decode())
    return texts, fixed


def _item(item: Mapping[str, Any], texts: list[str]) -> int:
    """Append one input item's text; its fixed cost (images)."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            return 0
        return _parts(content if isinstance(content, list) else (), texts)
    if kind == "function_call":
        texts += [str(item.get("name") or ""), str(item.get("arguments") or "")]
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, str):
            texts.append(output)
        elif isinstance(output, list):
            return _parts(output, texts)
    elif kind != "reasoning":  # reasoning is the model's own, encrypted; anything else: its JSON over-counts
        texts.append(orjson.dumps(item).decode())
    return 0


def _parts(parts: Iterable[Any], texts: list[str]) -> int:
    fixed = 0
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        field = _TEXT_PARTS.get(kind) if isinstance(kind, str) else None
        if field is not None:
            texts.append(str(part.get(field) or ""))
        elif kind == "input_image":
            fixed += IMAGE_TOKENS_LOW if part.get("detail") == "low" else IMAGE_TOKENS
        else:  # files, audio: unknown cost; their JSON over-counts, the safe side
            texts.append(orjson.dumps(part).decode())
    return fixed

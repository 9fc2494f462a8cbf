"""The prompt-token estimate of a Messages body, the twin of ``tokens.estimate_prompt_tokens`` for chat:
what the reservation holds before the call, and ``count_tokens``' answer when no Anthropic deployment counts.

Claude's tokenizer is not shipped offline; text is counted with tiktoken (cl100k_base for Claude models)
and settlement charges what the provider reports. Where a cost is unknown the estimate errs high.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from llm_gateway.tokens import (
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_TOOL,
    count_text_tokens,
    estimate_inline,
)

# Anthropic resizes an image to at most ~1.15 megapixels and charges width x height / 750: at most ~1,600.
IMAGE_TOKENS = 1_600
# A PDF or URL document: Anthropic charges its text plus an image per page, 1,500-3,000 tokens a page,
# and the page count is not known without reading the file. One page's worth; settlement corrects it.
DOCUMENT_TOKENS = 3_000
# The system prompt Anthropic adds when tools are given (346 tokens for tool_choice auto/none, 313 for
# any/tool, on its tool-use pricing table).
TOOLS_SYSTEM_PROMPT = 346


def estimate_messages_tokens(body: Mapping[str, Any], model: str) -> int:
    """Prompt tokens of a Messages body: system, every block of every message (text, tool calls and
    results, thinking), tool definitions, images and documents at a fixed cost. Never raises on a body
    ``parse_messages_request`` accepted."""
    texts, fixed = messages_prompt_texts(body)
    return _count(texts, fixed, model)


async def estimate_messages_tokens_async(body: Mapping[str, Any], model: str) -> int:
    """``estimate_messages_tokens`` that keeps large prompts (and encoders not yet built) off the event loop."""
    texts, fixed = messages_prompt_texts(body)
    if estimate_inline(sum(len(text) for text in texts), model):
        return _count(texts, fixed, model)
    return await asyncio.to_thread(_count, texts, fixed, model)


def _count(texts: Iterable[str], fixed: int, model: str) -> int:
    return fixed + sum(count_text_tokens(text, model) for text in texts)


def messages_prompt_texts(body: Mapping[str, Any]) -> tuple[list[str], int]:
    """(every piece of text the model reads, fixed tokens of framing, images and documents)."""
    texts: list[str] = []
    fixed = REPLY_PRIMING
    system = body.get("system")
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        fixed += _blocks(system, texts)
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        fixed += TOKENS_PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            fixed += _blocks(content, texts)
    tools = [tool for tool in body.get("tools") or () if isinstance(tool, Mapping)]
    if tools:
        fixed += TOOLS_SYSTEM_PROMPT + TOKENS_PER_TOOL * len(tools)
        texts += [_tool_text(tool) for tool in tools]
    return texts, fixed


def _tool_text(tool: Mapping[str, Any]) -> str:
    if "input_schema" not in tool:  # a server tool: its definition is all there is to read
        return orjson.dumps(tool).decode()
    description = tool.get("description")
    return "\n".join(
        (str(tool.get("name") or ""), description if isinstance(description, str) else "", _json(tool["input_schema"]))
    )


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # not JSON (only a caller bypassing the parser gets here)
        return str(value)


def _blocks(blocks: list[Any], texts: list[str]) -> int:
    """Appends the text of each content block to ``texts``; returns the fixed tokens of the others."""
    fixed = 0
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "image":
            fixed += IMAGE_TOKENS
        elif kind == "thinking":
            texts.append(str(block.get("thinking") or ""))
        elif kind == "redacted_thinking":
            continue  # opaque data the model reads back as the thinking it stands for: unknown, small
        elif kind == "document":
            fixed += _document(block, texts)
        elif kind == "tool_use" or kind == "server_tool_use":
            texts += [str(block.get("name") or ""), _json(block.get("input"))]
        elif kind == "tool_result":
            content = block.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                fixed += _blocks(content, texts)
        else:  # search results, server tool results, types yet to come: their JSON, which over-counts
            texts.append(_json(block))
    return fixed


def _document(block: Mapping[str, Any], texts: list[str]) -> int:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "text":
        texts.append(str(source.get("data") or "") if isinstance(source, Mapping) else "")
        return 0
    if kind == "content":
        content = source.get("content") if isinstance(source, Mapping) else None
        if isinstance(content, str):
            texts.append(content)
            return 0
        return _blocks(content, texts) if isinstance(content, list) else 0
    return DOCUMENT_TOKENS  # a PDF (base64, URL or file id): its bytes are not its tokens

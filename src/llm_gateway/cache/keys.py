"""Cache keys: a hash of everything in a request that can change its answer, scoped to a user or global.

Fields are dropped by an *exclusion* list: an unknown or future field (``verbosity``, a vendor
extension) stays in the key, so the worst a new field costs is a lower hit rate, never a wrong answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

# Bump when the normalisation below changes, so old entries are not read under new rules.
KEY_VERSION = 1

# Top-level fields that never change the answer's content. ``model`` is replaced by the model
# group the router resolved; ``stream``/``stream_options`` only change the framing (a streamed and
# a non-streamed request share an entry); the rest are attribution, storage or billing hints.
IGNORED_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)


def cache_key(body: dict[str, Any], *, group: str, scope_id: str | None) -> str:
    """The hex key for ``body`` sent to model ``group``; ``scope_id`` is the user id, or None for a global cache.

    Canonical JSON (sorted keys, no whitespace) makes key order and formatting irrelevant; a
    top-level ``null`` is dropped because the API treats it as the field being absent.
    """
    relevant = {name: value for name, value in body.items() if name not in IGNORED_FIELDS and value is not None}
    material = orjson.dumps(
        {"v": KEY_VERSION, "group": group, "scope": scope_id, "body": relevant}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(material, digest_size=16).hexdigest()


def is_cacheable(body: dict[str, Any]) -> bool:
    """Whether an answer to ``body`` may be stored and replayed.

    Refused: ``n`` > 1 (the caller asks for several different samples, typically to vote or pick
    among them; replaying one fixed set defeats that, and the entry is n times larger) and audio
    output (large, and the answer's ``audio.id`` refers to upstream state that expires).
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    n = body.get("n")
    if n is not None and n != 1:
        return False
    modalities = body.get("modalities")
    return not (isinstance(modalities, list) and "audio" in modalities) and body.get("audio") is None

"""API keys: the format, the hash, and the hot-path lookup that seldom touches the database.

A key reads ``sk-gw-<id>-<secret>``: ``id`` (12 base62 characters) names the key in listings and
logs, ``secret`` (32 base62 characters, about 190 random bits) is never stored. The database holds
the SHA-256 of the whole key: a key this random needs no slow hash, and lookups stay an index probe.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import string
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from llm_gateway.auth.identity import Identity
from llm_gateway.auth.overrides import Defaults, key_identity
from llm_gateway.auth.ttl_cache import CachedLookup
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.store import accounts
from llm_gateway.store.db import Database

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-gw-"
_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH, _SECRET_LENGTH = 12, 32
# While the database is down, a key (or user) resolved within this long keeps working as last seen.
# Revocations heard meanwhile still evict it; only one committed just before the outage and never
# heard here could be missed, for the length of the outage.
STALE_IF_STORE_DOWN_SECONDS = 3600.0
KEY_SHAPE = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9]{{{_ID_LENGTH}}}-[A-Za-z0-9]{{{_SECRET_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    key: str  # the whole secret key, shown once
    key_hash: str
    prefix: str  # the non-secret part, for listings: ``sk-gw-<id>``


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generate_key() -> NewKey:
    key_id = _random(_ID_LENGTH)
    key = f"{KEY_PREFIX}{key_id}-{_random(_SECRET_LENGTH)}"
    return NewKey(id=key_id, key=key, key_hash=hash_key(key), prefix=f"{KEY_PREFIX}{key_id}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(candidate: str) -> bool:
    """Right shape: worth a lookup. Anything else is refused without touching the cache or database."""
    return KEY_SHAPE.fullmatch(candidate) is not None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a request needs to know about a key, kept in the cache; expiry is checked on every use."""

    identity: Identity
    expires_at: float | None  # seconds since the epoch
    revoked: bool

    def usable(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class KeyLookup:
    """Presented key -> ``KeyRecord`` (None when unknown), cached in-process for ``ttl()`` seconds.

    Unknown hashes are cached too, so a flood of wrong keys does not become a flood of queries.
    """

    def __init__(self, database: Database, defaults: Defaults, ttl: Callable[[], float]) -> None:
        self._database = database
        self._defaults = defaults
        self._lookup: CachedLookup[KeyRecord | None] = CachedLookup(
            self._load, ttl, stale_if=(ServiceUnavailable,), stale_for=STALE_IF_STORE_DOWN_SECONDS
        )

    async def find(self, key: str) -> KeyRecord | None:
        return await self._lookup.get(hash_key(key))

    async def _load(self, key_hash: str) -> KeyRecord | None:
        self._database.require_ready("key store")
        try:
            async with self._database.sessions() as session:
                found = await accounts.find_key(session, key_hash)
        except (SQLAlchemyError, OSError) as exc:
            log.error("key lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable("The key store is unavailable; try again shortly.") from None
        if found is None:
            return None
        key, user, team = found
        expires_at = key.expires_at.timestamp() if key.expires_at else None
        return KeyRecord(key_identity(key, user, team, self._defaults), expires_at, key.revoked_at is not None)

    def forget_key(self, key_id: str) -> None:
        self._lookup.forget(lambda record: record is not None and record.identity.key_id == key_id)

    def forget_user(self, user_id: str) -> None:
        self._lookup.forget(lambda record: record is not None and record.identity.user_id == user_id)

    def forget_team(self, team_id: str) -> None:
        self._lookup.forget(lambda record: record is not None and record.identity.team_id == team_id)

    def clear(self) -> None:
        self._lookup.clear()


class LastUsed:
    """Records ``last_used_at`` off the hot path: noted in memory, written in one batch now and then.

    A key is noted at most once per ``resolution`` seconds, so a busy key costs one dict write
    per request and one row update per flush.
    """

    def __init__(self, database: Database, *, flush_every: float = 10.0, resolution: float = 60.0) -> None:
        self._database = database
        self._flush_every = flush_every
        self._resolution = resolution
        self._noted: dict[str, float] = {}
        self._due: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._noted.get(key_id, -self._resolution) >= self._resolution:
            if len(self._noted) > 100_000:
                self._noted.clear()
            self._noted[key_id] = now
            self._due[key_id] = datetime.now(UTC)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-key-last-used")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self.flush()

    async def flush(self) -> None:
        if not self._database.ready:  # kept until the database has been reached
            return
        due, self._due = self._due, {}
        if not due:
            return
        try:
            async with self._database.sessions.begin() as session:
                await accounts.touch_keys(session, due)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not record key use (%d keys): %s", len(due), type(exc).__name__)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

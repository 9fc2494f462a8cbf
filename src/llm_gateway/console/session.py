"""Who may use the console: sign-in with the admin key, server-side sessions, CSRF tokens, a sign-in rate limit.

A session is a random id in an ``HttpOnly`` cookie; the database keeps only its SHA-256 (``console_sessions``),
so every replica recognises it and a copy of the table signs no one in. Each session has its own CSRF token,
sent back in every form and compared in constant time. Failed sign-ins are counted per client address, in
this process: about ten a minute, then 429 until the oldest failure is a minute old.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete

from llm_gateway.store.db import Database
from llm_gateway.store.tables import ConsoleSession, utcnow

SESSION_LIFETIME = timedelta(hours=8)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    """Constant time whatever the lengths: both sides are hashed first, then compared."""
    return given is not None and hmac.compare_digest(digest(given).encode(), digest(expected).encode())


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live session: its CSRF token (rendered into every form) and when it ends."""

    session_id: str
    csrf_token: str
    expires_at: datetime


class Sessions:
    """The ``console_sessions`` table: create at sign-in, find on every request, delete at sign-out."""

    def __init__(
        self, database: Database, lifetime: timedelta = SESSION_LIFETIME, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._database = database
        self._lifetime = lifetime
        self._clock = clock

    @property
    def lifetime(self) -> timedelta:
        return self._lifetime

    async def create(self) -> SignedIn:
        """A new session; expired ones are purged on the way (sign-ins are rare, the index makes it cheap)."""
        now = self._clock()
        session_id, csrf_token = new_token(), new_token()
        row = ConsoleSession(
            id_hash=digest(session_id), csrf_token=csrf_token, created_at=now, expires_at=now + self._lifetime
        )
        async with self._database.sessions.begin() as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            session.add(row)
        return SignedIn(session_id, csrf_token, row.expires_at)

    async def find(self, session_id: str | None) -> SignedIn | None:
        """The live session with this id; an expired one is deleted and is None."""
        if not session_id or len(session_id) > 128:
            return None
        id_hash = digest(session_id)
        async with self._database.sessions() as session:
            row = await session.get(ConsoleSession, id_hash)
        if row is None:
            return None
        if row.expires_at <= self._clock():
            await self._delete(id_hash)
            return None
        return SignedIn(session_id, row.csrf_token, row.expires_at)

    async def end(self, session_id: str) -> None:
        await self._delete(digest(session_id))

    async def _delete(self, id_hash: str) -> None:
        async with self._database.sessions.begin() as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == id_hash))


class SignInLimiter:
    """Failed sign-ins per client: ``limit`` within ``window`` seconds, then refused until the oldest ages out.

    In memory, per process; at most ``max_clients`` addresses are remembered (the least recently failing go)."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until this client may try again; None when it may try now."""
        failures = self._recent(client)
        if failures is None or len(failures) < self._limit:
            return None
        return max(1.0, failures[0] + self._window - self._clock())

    def failed(self, client: str) -> None:
        failures = self._recent(client) or deque()
        failures.append(self._clock())
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

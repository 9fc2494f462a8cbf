"""The conversation store: responses of ``POST /v1/responses`` kept in the database for their owner.

``previous_response_id`` expands from it (or passes through to the native provider that made it), and
``GET``/``DELETE /v1/responses/{id}`` read and remove it. Each row holds one turn (its own input and
response) and a link to the response it continued, so a conversation costs storage linear in its turns;
reading a response walks the links back in one recursive query. Rows expire after ``ttl`` (a new turn
extends its ancestors, so a conversation in use keeps its beginning); a background task deletes expired
rows in small batches, and reads never see an expired row even before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CTE, Integer, Table, Update, delete, literal, select, update
from sqlalchemy.exc import SQLAlchemyError

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.store.db import Database, insert_ignoring_conflicts
from llm_gateway.store.tables import StoredResponseRecord, utcnow

log = logging.getLogger(__name__)
_TABLE = cast(Table, StoredResponseRecord.__table__)
_ID_LENGTH = 64  # the id and previous_id columns' width
# The most turns a read walks back (and a save extends): a bound on one query's work, and on a loop of
# links, well past the longest agent session; older turns are left out, as if deleted.
MAX_CHAIN = 10_000
# A save extends its ancestors a thirtieth of the ttl (a day of 30) beyond its own expiry, and only those
# that need it: each row is rewritten about once a day while its conversation goes on, not at every turn.
_EXTENSION_DIVISOR = 30
PURGE_BATCH = 1000  # rows per DELETE: each batch is its own short transaction
_FIRST_PURGE_SECONDS = 10.0  # after start(): soon, but not in the middle of start-up
_FIRST_RETRY_SECONDS = 5.0  # after a failed purge, doubling up to the purge interval


Turn = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # a response's input items, then its output items


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    provider: str  # the provider that answered
    native: bool  # answered by that provider's own Responses API: it knows this id too
    model_group: str
    input_items: list[dict[str, Any]]  # this response's own request input (the history is in ``earlier``)
    response: dict[str, Any]  # the Response object as the caller got it
    created_at: datetime
    expires_at: datetime
    previous_id: str | None = None  # the response this one continued, if any
    earlier: tuple[Turn, ...] = ()  # the turns of the responses it continued, oldest first, as far as kept

    def history(self) -> list[dict[str, Any]]:
        """What a follow-up's ``previous_response_id`` expands to: each turn's input then its output, oldest
        first, through this response."""
        items: list[dict[str, Any]] = []
        for turn_input, turn_output in (*self.earlier, (self.input_items, _output(self.response))):
            items += turn_input
            items += turn_output
        return items


class ConversationStore:
    """Save, read and delete stored responses (one short transaction each); ``start()`` runs the purge."""

    def __init__(
        self, database: Database, *, ttl: timedelta = timedelta(days=30), purge_interval: float = 3600.0
    ) -> None:
        if ttl <= timedelta(0) or purge_interval <= 0:
            raise ValueError("ttl and purge_interval must be positive")
        self._database = database
        self._ttl = ttl
        self._purge_interval = purge_interval
        self._insert = insert_ignoring_conflicts(database.backend, _TABLE)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def save(
        self,
        response: dict[str, Any],
        *,
        owner: str,
        provider: str,
        native: bool,
        model_group: str,
        input_items: list[dict[str, Any]],
        previous_id: str | None = None,
    ) -> None:
        """Keep ``response`` (its ``id`` is the key) for ``ttl``, with this request's own ``input_items`` and
        ``previous_id``, the response it continued. An id already stored keeps its first row.

        Ignoring the duplicate, rather than overwriting, means no caller can replace another's response.
        In the same transaction the owner's live ancestors (up to ``MAX_CHAIN``) are extended to outlive the
        new row, so a live response's conversation is always whole.
        """
        response_id = response.get("id")
        if not isinstance(response_id, str) or not 0 < len(response_id) <= _ID_LENGTH:
            # Only an upstream's own id can be odd: not storable, so a follow-up will find nothing.
            log.warning(
                "response from %s not stored: its id is not a string of 1 to %d characters", provider, _ID_LENGTH
            )
            return
        if previous_id is not None and not 0 < len(previous_id) <= _ID_LENGTH:
            previous_id = None  # no stored response has such an id: there is nothing to link to
        now = utcnow()
        expires_at = now + self._ttl
        values = {
            "id": response_id,
            "owner": owner,
            "provider": provider,
            "native": native,
            "model_group": model_group,
            "previous_id": previous_id,
            "input_items": input_items,
            "response": response,
            "created_at": now,
            "expires_at": expires_at,
        }
        self._database.require_ready("conversation store")
        with _unavailable_on_failure("save"):
            async with self._database.engine.begin() as connection:
                inserted = (await connection.execute(self._insert, values)).rowcount
                if inserted and previous_id is not None:
                    await connection.execute(self._extension(previous_id, owner, now, expires_at))

    def _extension(self, previous_id: str, owner: str, now: datetime, expires_at: datetime) -> Update:
        """The UPDATE that keeps a new row's ancestors (those a read of it walks to) alive as long as it.

        Only rows expiring before the new one are written, and those a margin beyond it, so the next turns
        find nothing to do for a while. An ancestor already expired stays so (reads already stopped there).
        """
        ancestors = _chain(previous_id, owner, now, MAX_CHAIN - 1)
        return (
            update(_TABLE)
            .where(_TABLE.c.id.in_(select(ancestors.c.id)), _TABLE.c.owner == owner, _TABLE.c.expires_at < expires_at)
            .values(expires_at=expires_at + self._ttl / _EXTENSION_DIVISOR)
        )

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The response with the turns it continued, or None when it is unknown, expired or another owner's
        (one answer: no oracle).

        One query walks the ``previous_id`` links back through the owner's live rows, at most ``MAX_CHAIN``
        of them. The walk stops at a gap: an ancestor deleted, expired or not the owner's (a link to another
        owner's response is never followed), and the conversation continues from what remains: deleting a
        response leaves the turns after it.
        """
        chain = _chain(response_id, owner, utcnow(), MAX_CHAIN)
        query = select(_TABLE).join(chain, chain.c.id == _TABLE.c.id).order_by(chain.c.depth)
        self._database.require_ready("conversation store")
        with _unavailable_on_failure("read"):
            async with self._database.engine.connect() as connection:
                rows = (await connection.execute(query)).mappings().all()
        if not rows:
            return None
        newest, *ancestors = rows
        earlier: list[Turn] = []
        seen = {newest["id"]}
        for row in ancestors:  # newest first
            if row["id"] in seen:  # a loop (an upstream reusing a deleted id): cut where it repeats
                break
            seen.add(row["id"])
            earlier.append((row["input_items"], _output(row["response"])))
        earlier.reverse()
        return StoredResponse(**newest, earlier=tuple(earlier))

    async def delete(self, response_id: str, owner: str) -> bool:
        """Remove the response; False when it is unknown, expired or another owner's (that row stays)."""
        statement = delete(_TABLE).where(
            _TABLE.c.id == response_id, _TABLE.c.owner == owner, _TABLE.c.expires_at > utcnow()
        )
        self._database.require_ready("conversation store")
        with _unavailable_on_failure("delete"):
            async with self._database.engine.begin() as connection:
                result = await connection.execute(statement)
        return bool(result.rowcount)

    async def purge_expired(self) -> int:
        """Delete every row expired by now, ``PURGE_BATCH`` at a time; the number of rows removed."""
        return await self._purge(until=utcnow(), stop=None)

    async def _purge(self, *, until: datetime, stop: asyncio.Event | None) -> int:
        # Rows locked by a concurrent DELETE (an owner's, or another worker's purge) are skipped, not
        # waited for, on PostgreSQL; SQLite has no row locks and ignores the clause.
        batch = (
            select(_TABLE.c.id)
            .where(_TABLE.c.expires_at <= until)
            .limit(PURGE_BATCH)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = delete(_TABLE).where(_TABLE.c.id.in_(batch))
        removed = 0
        while stop is None or not stop.is_set():
            async with self._database.engine.begin() as connection:
                deleted = (await connection.execute(statement)).rowcount
            removed += deleted
            if deleted < PURGE_BATCH:
                break
        return removed

    def start(self) -> None:
        """Start the background purge: first soon after start, then every ``purge_interval`` seconds."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="conversation-store-purge")

    async def _run(self) -> None:
        delay, failures = min(self._purge_interval, _FIRST_PURGE_SECONDS), 0
        while not await self._stopped_within(delay):
            if not self._database.ready:  # not reached yet: nothing to purge for now
                continue
            try:
                removed = await self._purge(until=utcnow(), stop=self._stopping)
            except Exception as exc:  # any failure (the database down, mostly): log it, back off, go on
                failures += 1
                delay = min(_FIRST_RETRY_SECONDS * 2 ** min(failures - 1, 16), self._purge_interval)
                log.warning(
                    "conversation store purge failed (%s, %d in a row); retrying in %.1f s",
                    type(exc).__name__,
                    failures,
                    delay,
                )
                continue
            if removed:
                log.info("conversation store purge: %d expired responses removed", removed)
            delay, failures = self._purge_interval, 0

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return self._stopping.is_set()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop the purge and wait for it: a batch in flight may finish, for at most ``timeout`` seconds."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._stopping.set()
        _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:  # a database that does not answer: give up on the batch
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _chain(response_id: str, owner: str, now: datetime, limit: int) -> CTE:
    """``WITH RECURSIVE``: ``response_id`` (depth 1) and the responses it continued, newest first (depth 2,
    3, ...), while they are ``owner``'s and live, for at most ``limit`` rows. Each step is a primary-key
    lookup; a loop of links can only repeat rows up to ``limit``.
    """
    head, parent = _TABLE.alias("head"), _TABLE.alias("parent")
    chain = (
        select(head.c.id, head.c.previous_id, literal(1, Integer).label("depth"))
        .where(head.c.id == response_id, head.c.owner == owner, head.c.expires_at > now)
        .cte("chain", recursive=True)
    )
    return chain.union_all(
        select(parent.c.id, parent.c.previous_id, chain.c.depth + 1).where(
            parent.c.id == chain.c.previous_id,
            parent.c.owner == owner,
            parent.c.expires_at > now,
            chain.c.depth < limit,
        )
    )


def _output(response: dict[str, Any]) -> list[dict[str, Any]]:
    output = response.get("output")
    return output if isinstance(output, list) else []


@contextlib.contextmanager
def _unavailable_on_failure(action: str) -> Iterator[None]:
    """A database failure is a 503 whose message names no URL, credential or SQL (the log has the type)."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        log.warning("conversation store %s failed: %s", action, type(exc).__name__)
        raise ServiceUnavailable("The conversation store is unavailable; try again shortly.") from None

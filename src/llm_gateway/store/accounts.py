"""The queries on users and API keys; every caller passes its own session (one unit of work)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_gateway.store.db import insert_ignoring_conflicts
from llm_gateway.store.tables import ApiKey, User, utcnow


async def find_key(session: AsyncSession, key_hash: str) -> tuple[ApiKey, User | None] | None:
    """The key with this hash and its user's row (None when the user has no overrides row)."""
    query = select(ApiKey, User).outerjoin(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == key_hash)
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row else None


async def get_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def list_keys(session: AsyncSession, user_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list((await session.scalars(query)).all())


async def ensure_user(session: AsyncSession, user_id: str) -> None:
    """Create the user's row if it is missing; safe when two writers race."""
    now = utcnow()
    values = {"id": user_id, "created_at": now, "updated_at": now}
    statement = insert_ignoring_conflicts(session.get_bind().dialect.name, User).values(**values)
    await session.execute(statement)


async def add_key(session: AsyncSession, key: ApiKey) -> ApiKey:
    await ensure_user(session, key.user_id)
    session.add(key)
    await session.flush()
    return key


async def revoke_key(session: AsyncSession, key_id: str, at: datetime) -> ApiKey | None:
    """Mark the key revoked (the first revocation's time is kept); None when there is no such key."""
    key = await session.get(ApiKey, key_id, with_for_update=True)
    if key is not None and key.revoked_at is None:
        key.revoked_at = at
        await session.flush()
    return key


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def set_user_limits(session: AsyncSession, user_id: str, changes: Mapping[str, Any]) -> User:
    """Set the given override columns (None clears one back to the default); create the user if needed."""
    await ensure_user(session, user_id)
    user = await session.get(User, user_id, with_for_update=True, populate_existing=True)
    assert user is not None
    for column, value in changes.items():
        setattr(user, column, value)
    user.updated_at = utcnow()
    await session.flush()
    return user


async def touch_keys(session: AsyncSession, used: Mapping[str, datetime]) -> None:
    """Record when keys were last used: many keys, one executemany round trip."""
    if used:
        table = ApiKey.__table__
        assert isinstance(table, Table)
        statement = update(table).where(table.c.id == bindparam("key_id")).values(last_used_at=bindparam("at"))
        await session.execute(statement, [{"key_id": key_id, "at": at} for key_id, at in used.items()])

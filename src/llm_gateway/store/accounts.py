"""The queries on users, teams and API keys; every caller passes its own session (one unit of work)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_gateway.store.db import insert_ignoring_conflicts
from llm_gateway.store.tables import ApiKey, Team, User, utcnow

Changed = TypeVar("Changed", User, Team)


async def find_key(session: AsyncSession, key_hash: str) -> tuple[ApiKey, User | None, Team | None] | None:
    """The key with this hash, its user's row (None when the user has no overrides row) and the user's team."""
    query = (
        select(ApiKey, User, Team)
        .outerjoin(User, User.id == ApiKey.user_id)
        .outerjoin(Team, Team.id == User.team_id)
        .where(ApiKey.key_hash == key_hash)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1], row[2]) if row else None


async def find_user(session: AsyncSession, user_id: str) -> tuple[User | None, Team | None]:
    """A user's row and team, in one query: what an identity needs."""
    query = select(User, Team).outerjoin(Team, Team.id == User.team_id).where(User.id == user_id)
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row else (None, None)


async def get_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def list_keys(session: AsyncSession, user_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list((await session.scalars(query)).all())


async def ensure_user(session: AsyncSession, user_id: str) -> None:
    """Create the user's row if it is missing; safe when two writers race."""
    await _ensure(session, User, user_id)


async def _ensure(session: AsyncSession, model: type[User | Team], row_id: str) -> None:
    now = utcnow()
    values = {"id": row_id, "created_at": now, "updated_at": now}
    await session.execute(insert_ignoring_conflicts(session.get_bind().dialect.name, model).values(**values))


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
    return await _change(session, user, changes)


async def set_key_limits(session: AsyncSession, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
    """Set the given limit columns of a key (None clears one); None when there is no such key."""
    key = await session.get(ApiKey, key_id, with_for_update=True, populate_existing=True)
    if key is None:
        return None
    for column, value in changes.items():
        setattr(key, column, value)
    await session.flush()
    return key


async def get_team(session: AsyncSession, team_id: str) -> Team | None:
    return await session.get(Team, team_id)


async def set_team_limits(session: AsyncSession, team_id: str, changes: Mapping[str, Any]) -> Team:
    """Create the team if it is missing (safe when two writers race), then set the given columns."""
    await _ensure(session, Team, team_id)
    team = await session.get(Team, team_id, with_for_update=True, populate_existing=True)
    assert team is not None
    return await _change(session, team, changes)


async def list_users(session: AsyncSession, limit: int) -> list[User]:
    """Users with a row (overrides, a team, or a key), by id; at most ``limit``."""
    return list((await session.scalars(select(User).order_by(User.id).limit(limit))).all())


async def list_teams(session: AsyncSession, limit: int) -> list[tuple[Team, int]]:
    """Teams by id with their member counts, in one query; at most ``limit``."""
    members = select(User.team_id, func.count().label("members")).group_by(User.team_id).subquery()
    query = (
        select(Team, func.coalesce(members.c.members, 0))
        .outerjoin(members, members.c.team_id == Team.id)
        .order_by(Team.id)
        .limit(limit)
    )
    return [(team, int(count)) for team, count in (await session.execute(query)).all()]


async def team_members(session: AsyncSession, team_id: str) -> int:
    return int(await session.scalar(select(func.count()).select_from(User).where(User.team_id == team_id)) or 0)


async def _change(session: AsyncSession, row: Changed, changes: Mapping[str, Any]) -> Changed:
    for column, value in changes.items():
        setattr(row, column, value)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def touch_keys(session: AsyncSession, used: Mapping[str, datetime]) -> None:
    """Record when keys were last used: many keys, one executemany round trip."""
    if used:
        table = ApiKey.__table__
        assert isinstance(table, Table)
        statement = update(table).where(table.c.id == bindparam("key_id")).values(last_used_at=bindparam("at"))
        await session.execute(statement, [{"key_id": key_id, "at": at} for key_id, at in used.items()])

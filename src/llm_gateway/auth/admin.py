"""Key and user administration, shared by the admin API and the CLI so both behave the same.

Separate models for what comes in (``KeyCreate``), what leaves once (``KeyCreated``, the only one
with the secret) and what leaves afterwards (``KeyPublic``: never the secret nor its hash).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from llm_gateway.auth.api_keys import generate_key
from llm_gateway.auth.invalidation import Invalidations
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.store import accounts
from llm_gateway.store.db import Database
from llm_gateway.store.redis import redis_errors
from llm_gateway.store.tables import ApiKey, User, utcnow

log = logging.getLogger(__name__)


def _user_id(value: str) -> str:
    if value.startswith("anon:"):
        raise ValueError("user ids starting with 'anon:' are reserved for anonymous callers")
    if not value.isprintable():
        raise ValueError("must be printable text")
    return value


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


UserId = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_user_id)]
ModelName = Annotated[str, Field(min_length=1, max_length=255)]


def _json_number(value: object) -> object:
    # Lax ints would read `false` as a limit of 0, `true` as 1 and "60" as 60; 60.0 is a JSON integer.
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


TokenBudget = Annotated[int, Field(ge=0, le=10**15), BeforeValidator(_json_number)]
RequestsPerMinute = Annotated[int, Field(ge=0, le=10**9), BeforeValidator(_json_number)]


class KeyCreate(BaseModel):
    """``POST /admin/keys``. ``models``: the only models this key may use (all when absent)."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    name: str | None = Field(None, max_length=255)
    models: list[ModelName] | None = Field(None, min_length=1, max_length=1000)
    monthly_token_budget: TokenBudget | None = None
    rate_limit_per_minute: RequestsPerMinute | None = None
    expires_at: Annotated[datetime | None, AfterValidator(_future)] = None


class _KeyFields(BaseModel):
    id: str
    user_id: str
    name: str | None
    prefix: str
    models: list[str] | None
    monthly_token_budget: int | None
    rate_limit_per_minute: int | None
    expires_at: datetime | None
    created_at: datetime


class KeyCreated(_KeyFields):
    """The answer to a creation: the only time the secret ``key`` ever leaves the gateway."""

    key: str


class KeyPublic(_KeyFields):
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls.model_validate(key, from_attributes=True)


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyPublic]


class UserLimits(BaseModel):
    """``PUT /admin/users/{id}``: fields sent are set (null = back to the default); others are kept."""

    model_config = ConfigDict(extra="forbid")

    monthly_token_budget: TokenBudget | None = None
    rate_limit_per_minute: RequestsPerMinute | None = None


class UserPublic(BaseModel):
    user_id: str
    monthly_token_budget: int | None
    rate_limit_per_minute: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(
            user_id=user.id,
            monthly_token_budget=user.monthly_token_budget,
            rate_limit_per_minute=user.rate_limit_per_minute,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class Accounts:
    """The operations; every change that could leave a stale cache is announced to every process."""

    def __init__(self, database: Database, invalidations: Invalidations) -> None:
        self._database = database
        self._invalidations = invalidations

    @property
    def database(self) -> Database:
        return self._database

    async def create_key(self, request: KeyCreate) -> KeyCreated:
        new = generate_key()
        row = ApiKey(
            id=new.id,
            user_id=request.user_id,
            name=request.name,
            key_hash=new.key_hash,
            prefix=new.prefix,
            models=list(dict.fromkeys(request.models)) if request.models is not None else None,
            monthly_token_budget=request.monthly_token_budget,
            rate_limit_per_minute=request.rate_limit_per_minute,
            expires_at=request.expires_at,
            created_at=utcnow(),
        )
        async with self._database.sessions.begin() as session:
            await accounts.add_key(session, row)
        log.info("api key created: id=%s user=%s", row.id, row.user_id)
        return KeyCreated(key=new.key, **KeyPublic.of(row).model_dump(include=set(_KeyFields.model_fields)))

    async def list_keys(self, user_id: str | None = None) -> list[KeyPublic]:
        async with self._database.sessions() as session:
            return [KeyPublic.of(key) for key in await accounts.list_keys(session, user_id)]

    async def revoke_key(self, key_id: str) -> KeyPublic | None:
        """Revoke (idempotent: revoking again announces it again); None when there is no such key."""
        async with self._database.sessions.begin() as session:
            key = await accounts.revoke_key(session, key_id, utcnow())
        if key is None:
            return None
        log.info("api key revoked: id=%s user=%s", key.id, key.user_id)
        await self._announce(f"key:{key.id}")
        return KeyPublic.of(key)

    async def set_user(self, user_id: str, limits: UserLimits) -> UserPublic:
        changes = limits.model_dump(include=limits.model_fields_set)
        async with self._database.sessions.begin() as session:
            user = await accounts.set_user_limits(session, user_id, changes)
        log.info("user limits set: user=%s %s", user_id, changes)
        await self._announce(f"user:{user_id}")
        return UserPublic.of(user)

    async def get_user(self, user_id: str) -> UserPublic | None:
        async with self._database.sessions() as session:
            user = await accounts.get_user(session, user_id)
        return UserPublic.of(user) if user else None

    async def _announce(self, message: str) -> None:
        for attempt in range(3):
            try:
                await self._invalidations.publish(message)
                return
            except redis_errors() as exc:
                log.warning("cannot announce %s (attempt %d): %s", message, attempt + 1, type(exc).__name__)
                await asyncio.sleep(0.1 * (attempt + 1))
        raise ServiceUnavailable(
            "Saved, but other gateway processes could not be told (Redis is unreachable): they notice within "
            "KEY_CACHE_TTL_SECONDS. Retry to announce it again."
        )

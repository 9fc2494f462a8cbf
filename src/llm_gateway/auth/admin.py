"""Key, user and team administration, shared by the admin API and the CLI so both behave the same.

Separate models for what comes in (``KeyCreate``), what leaves once (``KeyCreated``, the only one
with the secret) and what leaves afterwards (``KeyPublic``: never the secret nor its hash).
US dollar amounts come in as strings or numbers and leave as strings (``schemas/money.py``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from llm_gateway.auth.api_keys import generate_key
from llm_gateway.auth.invalidation import Invalidations
from llm_gateway.errors import InvalidRequest, ServiceUnavailable
from llm_gateway.schemas.money import Usd, UsdBudget
from llm_gateway.store import accounts
from llm_gateway.store.db import Database
from llm_gateway.store.redis import redis_errors
from llm_gateway.store.tables import ApiKey, Team, User, utcnow

log = logging.getLogger(__name__)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text")
    return value


def _user_id(value: str) -> str:
    if value.startswith("anon:"):
        raise ValueError("user ids starting with 'anon:' are reserved for anonymous callers")
    return _printable(value)


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


UserId = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_user_id)]
TeamId = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_printable)]


def check_team_id(team_id: str) -> str:
    """A team id from a URL or the command line: what ``TeamId`` accepts, else 400."""
    if not 0 < len(team_id) <= 255 or not team_id.isprintable():
        raise InvalidRequest("A team id is 1 to 255 printable characters.", param="team_id")
    return team_id


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
    monthly_budget_usd: UsdBudget | None = None
    rate_limit_per_minute: RequestsPerMinute | None = None
    expires_at: Annotated[datetime | None, AfterValidator(_future)] = None


class KeyLimits(BaseModel):
    """``PATCH /admin/keys/{id}``: fields sent are set (null = no cap of its own); others are kept."""

    model_config = ConfigDict(extra="forbid")

    monthly_token_budget: TokenBudget | None = None
    monthly_budget_usd: UsdBudget | None = None
    rate_limit_per_minute: RequestsPerMinute | None = None


class _KeyFields(BaseModel):
    id: str
    user_id: str
    name: str | None
    prefix: str
    models: list[str] | None
    monthly_token_budget: int | None
    monthly_budget_usd: Usd | None
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
    """``PUT /admin/users/{id}``: fields sent are set (null = back to the default, or no team); others are kept."""

    model_config = ConfigDict(extra="forbid")

    monthly_token_budget: TokenBudget | None = None
    monthly_budget_usd: UsdBudget | None = None
    rate_limit_per_minute: RequestsPerMinute | None = None
    team_id: TeamId | None = None  # the team must exist (``PUT /admin/teams/{id}``)


class UserPublic(BaseModel):
    user_id: str
    team_id: str | None
    monthly_token_budget: int | None
    monthly_budget_usd: Usd | None
    rate_limit_per_minute: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(
            user_id=user.id,
            team_id=user.team_id,
            monthly_token_budget=user.monthly_token_budget,
            monthly_budget_usd=user.monthly_budget_usd,
            rate_limit_per_minute=user.rate_limit_per_minute,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class TeamLimits(BaseModel):
    """``PUT /admin/teams/{id}``: creates the team; fields sent are set (null = no such limit); others are kept.

    The budgets are the whole team's for the month; ``rate_limit_per_minute`` counts the requests of all its
    members together."""

    model_config = ConfigDict(extra="forbid")

    monthly_budget_usd: UsdBudget | None = None
    monthly_token_budget: TokenBudget | None = None
    rate_limit_per_minute: RequestsPerMinute | None = None


class TeamPublic(BaseModel):
    team_id: str
    monthly_budget_usd: Usd | None
    monthly_token_budget: int | None
    rate_limit_per_minute: int | None
    members: int  # users whose team this is
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, team: Team, members: int) -> TeamPublic:
        return cls(
            team_id=team.id,
            monthly_budget_usd=team.monthly_budget_usd,
            monthly_token_budget=team.monthly_token_budget,
            rate_limit_per_minute=team.rate_limit_per_minute,
            members=members,
            created_at=team.created_at,
            updated_at=team.updated_at,
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
            monthly_budget_usd=request.monthly_budget_usd,
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

    async def get_key(self, key_id: str) -> KeyPublic | None:
        async with self._database.sessions() as session:
            key = await accounts.get_key(session, key_id)
            return KeyPublic.of(key) if key else None

    async def revoke_key(self, key_id: str) -> KeyPublic | None:
        """Revoke (idempotent: revoking again announces it again); None when there is no such key."""
        async with self._database.sessions.begin() as session:
            key = await accounts.revoke_key(session, key_id, utcnow())
        if key is None:
            return None
        log.info("api key revoked: id=%s user=%s", key.id, key.user_id)
        await self._announce(f"key:{key.id}")
        return KeyPublic.of(key)

    async def set_key(self, key_id: str, limits: KeyLimits) -> KeyPublic | None:
        """Change a key's own limits; None when there is no such key."""
        changes = limits.model_dump(include=limits.model_fields_set)
        async with self._database.sessions.begin() as session:
            key = await accounts.set_key_limits(session, key_id, changes)
        if key is None:
            return None
        log.info("api key limits set: id=%s %s", key_id, changes)
        await self._announce(f"key:{key_id}")
        return KeyPublic.of(key)

    async def set_user(self, user_id: str, limits: UserLimits) -> UserPublic:
        """Set a user's overrides and team. An unknown team is refused (400), naming how to create it."""
        changes = limits.model_dump(include=limits.model_fields_set)
        team_id = changes.get("team_id")
        async with self._database.sessions.begin() as session:
            if team_id is not None and await accounts.get_team(session, team_id) is None:
                raise InvalidRequest(
                    f"No team '{team_id}': create it first (PUT /admin/teams/{{id}}, or `llm-gateway teams set`).",
                    param="team_id",
                )
            user = await accounts.set_user_limits(session, user_id, changes)
        log.info("user limits set: user=%s %s", user_id, changes)
        await self._announce(f"user:{user_id}")
        return UserPublic.of(user)

    async def set_team(self, team_id: str, limits: TeamLimits) -> TeamPublic:
        """Create the team, or change its limits; every member's cached identity is told."""
        changes = limits.model_dump(include=limits.model_fields_set)
        async with self._database.sessions.begin() as session:
            team = await accounts.set_team_limits(session, team_id, changes)
            members = await accounts.team_members(session, team_id)
        log.info("team limits set: team=%s %s", team_id, changes)
        await self._announce(f"team:{team_id}")
        return TeamPublic.of(team, members)

    async def get_team(self, team_id: str) -> TeamPublic | None:
        async with self._database.sessions() as session:
            team = await accounts.get_team(session, team_id)
            return TeamPublic.of(team, await accounts.team_members(session, team_id)) if team else None

    async def list_users(self, limit: int = 1000) -> list[UserPublic]:
        async with self._database.sessions() as session:
            return [UserPublic.of(user) for user in await accounts.list_users(session, limit)]

    async def list_teams(self, limit: int = 1000) -> list[TeamPublic]:
        async with self._database.sessions() as session:
            return [TeamPublic.of(team, members) for team, members in await accounts.list_teams(session, limit)]

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

"""A JWT caller's identity: the user's overrides (if any) over the defaults, and their team; cached like keys."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from llm_gateway.auth.api_keys import STALE_IF_STORE_DOWN_SECONDS
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.overrides import Defaults, user_identity
from llm_gateway.auth.ttl_cache import CachedLookup
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.store import accounts
from llm_gateway.store.db import Database

log = logging.getLogger(__name__)


async def load_user_identity(database: Database, user_id: str, defaults: Defaults) -> Identity:
    """The user's identity as a JWT caller gets it, read from the database (the CLI's reports use it too)."""
    database.require_ready("user store")
    try:
        async with database.sessions() as session:
            user, team = await accounts.find_user(session, user_id)
    except (SQLAlchemyError, OSError) as exc:
        log.error("user lookup failed: %s", type(exc).__name__)
        raise ServiceUnavailable("The user store is unavailable; try again shortly.") from None
    return user_identity(user_id, user, team, defaults, "jwt")


class UserLookup:
    def __init__(self, database: Database, defaults: Defaults, ttl: Callable[[], float]) -> None:
        self._database = database
        self._defaults = defaults
        self._lookup: CachedLookup[Identity] = CachedLookup(
            self._load, ttl, stale_if=(ServiceUnavailable,), stale_for=STALE_IF_STORE_DOWN_SECONDS
        )

    async def identity(self, user_id: str) -> Identity:
        return await self._lookup.get(user_id)

    async def _load(self, user_id: str) -> Identity:
        return await load_user_identity(self._database, user_id, self._defaults)

    def forget_user(self, user_id: str) -> None:
        self._lookup.forget(lambda identity: identity.user_id == user_id)

    def forget_team(self, team_id: str) -> None:
        self._lookup.forget(lambda identity: identity.team_id == team_id)

    def clear(self) -> None:
        self._lookup.clear()

"""A JWT caller's identity: the user's database overrides (if any) over the defaults, cached like keys."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from llm_gateway.auth.api_keys import STALE_IF_STORE_DOWN_SECONDS, Defaults, first_set
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.ttl_cache import CachedLookup
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.store import accounts
from llm_gateway.store.db import Database

log = logging.getLogger(__name__)


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
        try:
            async with self._database.sessions() as session:
                user = await accounts.get_user(session, user_id)
        except (SQLAlchemyError, OSError) as exc:
            log.error("user lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable("The user store is unavailable; try again shortly.") from None
        return Identity(
            user_id=user_id,
            kind="jwt",
            rate_limit_per_minute=first_set(
                user.rate_limit_per_minute if user else None, self._defaults.rate_limit_per_minute
            ),
            monthly_token_budget=first_set(
                user.monthly_token_budget if user else None, self._defaults.monthly_token_budget
            ),
        )

    def forget_user(self, user_id: str) -> None:
        self._lookup.forget(lambda identity: identity.user_id == user_id)

    def clear(self) -> None:
        self._lookup.clear()

"""The identity layer on a real database, inside the test's event loop: limits, caching, last use, schema.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, select
from starlette.datastructures import Headers

from llm_gateway.auth.admin import KeyCreate, UserLimits
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.service import AuthService, open_auth
from llm_gateway.errors import AuthenticationFailed, ServiceUnavailable
from llm_gateway.settings import load_settings
from llm_gateway.store.db import Database, head_revision, open_database
from llm_gateway.store.tables import ApiKey, Base
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    sibling_database,
)

pytestmark = pytest.mark.integration

JWT_SECRET = "an-hmac-secret-that-is-long-enough-0123456789"
ENV = {
    "GATEWAY_CONFIG": "",
    "JWT_SECRET": JWT_SECRET,
    "RATE_LIMIT_PER_MINUTE": "60",
    "DEFAULT_MONTHLY_TOKEN_BUDGET": "1000",
    "ANON_RATE_LIMIT_PER_MINUTE": "5",
    "ANON_MONTHLY_TOKEN_BUDGET": "50",
}


class Queries:
    """Counts the SQL statements the engine runs."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        event.listen(database.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:  # noqa: F811
    async with open_database(database_url) as opened:
        yield opened


@pytest.fixture
async def auth(database: Database) -> AsyncIterator[AuthService]:
    async with open_auth(load_settings(ENV).settings, database, None) as service:
        yield service


async def new_key(auth: AuthService, user_id: str = "alice", **fields: Any) -> tuple[str, str]:
    created = await auth.accounts.create_key(KeyCreate(user_id=user_id, **fields))
    return created.key, created.id


async def resolve(auth: AuthService, headers: dict[str, str], peer: str = "192.0.2.10") -> Identity:
    return await auth.resolver.resolve(Headers(headers), peer)


async def test_migrations_and_models_agree(database: Database) -> None:
    def differences(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with database.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
    assert await database.revision() == head_revision()
    assert await database.migrate() == head_revision()  # a second run has nothing to do


async def test_start_ups_racing_on_a_fresh_database_migrate_once(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    """Workers starting together: one migrates under the database's lock, the others wait and find nothing to do.

    Without the lock, concurrent upgrades collide ("table alembic_version already exists").
    """
    async with sibling_database(database_url, tmp_path) as fresh:
        databases = [Database(fresh) for _ in range(4)]
        try:
            assert await asyncio.gather(*(d.migrate() for d in databases)) == [head_revision()] * 4
        finally:
            for database in databases:
                await database.aclose()


async def test_limits_come_from_the_key_then_the_user_then_the_defaults(auth: AuthService) -> None:
    plain, plain_id = await new_key(auth, "dave")
    capped, capped_id = await new_key(auth, "dave", monthly_token_budget=100, rate_limit_per_minute=7, models=["m"])
    assert await resolve(auth, {"x-api-key": plain}) == Identity(
        user_id="dave", kind="api_key", rate_limit_per_minute=60, monthly_token_budget=1000, key_id=plain_id
    )
    await auth.accounts.set_user("dave", UserLimits(monthly_token_budget=500, rate_limit_per_minute=30))
    assert await resolve(auth, {"x-api-key": plain}) == Identity(
        user_id="dave", kind="api_key", rate_limit_per_minute=30, monthly_token_budget=500, key_id=plain_id
    )
    assert await resolve(auth, {"authorization": f"Bearer {capped}"}) == Identity(
        user_id="dave",
        kind="api_key",
        rate_limit_per_minute=7,  # the key's own limit wins
        monthly_token_budget=500,  # the budget is the user's; the key's cap rides along
        key_id=capped_id,
        key_token_budget=100,
        allowed_models=frozenset({"m"}),
    )


async def test_jwt_users_get_their_database_overrides(auth: AuthService) -> None:
    import jwt

    token = jwt.encode({"sub": "erin", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    assert await resolve(auth, {"authorization": f"Bearer {token}"}) == Identity("erin", "jwt", 60, 1000)
    await auth.accounts.set_user("erin", UserLimits(rate_limit_per_minute=3))
    assert await resolve(auth, {"authorization": f"Bearer {token}"}) == Identity("erin", "jwt", 3, 1000)
    await auth.accounts.set_user("erin", UserLimits(rate_limit_per_minute=None))  # back to the default
    assert await resolve(auth, {"authorization": f"Bearer {token}"}) == Identity("erin", "jwt", 60, 1000)


async def test_anonymous_identity(auth: AuthService) -> None:
    assert await resolve(auth, {}, peer="198.51.100.4") == Identity("anon:198.51.100.4", "anonymous", 5, 50)
    # X-Forwarded-For is not trusted without TRUSTED_PROXIES.
    assert (await resolve(auth, {"x-forwarded-for": "1.2.3.4"}, peer="198.51.100.4")).user_id == "anon:198.51.100.4"


async def test_the_hot_path_does_not_query_the_database(
    auth: AuthService, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llm_gateway.auth.service.UNHEARD_TTL_SECONDS", 60.0)  # a slow machine must not expire it
    key, _ = await new_key(auth)
    queries = Queries(database)
    for _ in range(100):
        await resolve(auth, {"x-api-key": key})
    assert queries.count == 1
    unknown = "sk-gw-AAAAAAAAAAAA-" + "B" * 32
    for _ in range(100):
        with pytest.raises(AuthenticationFailed):
            await resolve(auth, {"x-api-key": unknown})
    assert queries.count == 2  # unknown keys are remembered too
    for _ in range(100):
        with pytest.raises(AuthenticationFailed):
            await resolve(auth, {"x-api-key": "not-even-the-shape"})
    assert queries.count == 2


async def test_revoking_evicts_this_process_at_once(auth: AuthService) -> None:
    key, key_id = await new_key(auth)
    await resolve(auth, {"x-api-key": key})
    revoked = await auth.accounts.revoke_key(key_id)
    assert revoked is not None and revoked.revoked_at is not None
    with pytest.raises(AuthenticationFailed):
        await resolve(auth, {"x-api-key": key})
    again = await auth.accounts.revoke_key(key_id)  # idempotent: keeps the first time
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert await auth.accounts.revoke_key("no-such-key") is None


async def test_expiry_is_checked_on_every_use_of_a_cached_key(
    auth: AuthService, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    key, _ = await new_key(auth, expires_at=expires)
    await resolve(auth, {"x-api-key": key})
    monkeypatch.setattr("llm_gateway.auth.resolve.time.time", lambda: expires.timestamp() + 1)
    with pytest.raises(AuthenticationFailed):
        await resolve(auth, {"x-api-key": key})


async def test_last_use_is_written_later_in_one_batch(
    auth: AuthService, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llm_gateway.auth.service.UNHEARD_TTL_SECONDS", 60.0)
    key, key_id = await new_key(auth)
    queries = Queries(database)
    for _ in range(20):
        await resolve(auth, {"x-api-key": key})
    assert queries.count == 1  # the lookup; nothing written on the request path
    await auth.last_used.flush()
    async with database.sessions() as session:
        used = await session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))
    assert used is not None and datetime.now(UTC) - used < timedelta(minutes=1)


async def test_created_keys_store_only_a_hash(auth: AuthService, database: Database) -> None:
    key, key_id = await new_key(auth, name="ci", models=["a", "b", "a"])
    async with database.sessions() as session:
        row = await session.get(ApiKey, key_id)
    assert row is not None
    stored = " ".join(str(getattr(row, column.key)) for column in ApiKey.__table__.columns)
    assert key not in stored and key.rsplit("-", 1)[1] not in stored
    assert (row.prefix, row.models, row.name) == (f"sk-gw-{key_id}", ["a", "b"], "ci")


async def test_a_database_outage_is_503_not_401(database_url: str) -> None:  # noqa: F811
    async with open_database(database_url) as database:
        async with open_auth(load_settings(ENV).settings, database, None) as auth:
            key, _ = await new_key(auth)
            await database.engine.dispose()
            database.engine.sync_engine.pool.dispose()

            def broken(*args: Any) -> None:
                raise OSError("database unreachable")

            event.listen(database.engine.sync_engine, "do_connect", broken)
            with pytest.raises(ServiceUnavailable):
                await resolve(auth, {"x-api-key": key})

"""Helpers for tests that need credentials or a database: the admin key, key creation, both backends.

``database_url`` is a module-scoped fixture parametrized over SQLite and PostgreSQL, so a test
module that uses it runs once per backend; import it into the module to use it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization

ADMIN_API_KEY = "test-admin-key-5f0c2a9e1b7d"
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN_API_KEY}"}
BACKENDS = ["sqlite", "postgresql"]


def create_key(base_url: str, user_id: str = "tester", **fields: Any) -> str:
    """A new API key from the gateway's admin API (the gateway needs ``ADMIN_API_KEY``)."""
    response = httpx.post(f"{base_url}/admin/keys", headers=ADMIN_HEADERS, json={"user_id": user_id, **fields})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'gateway.db'}"


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _with_database(server_url: str, name: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def sibling_database(database_url: str, directory: Path) -> AsyncIterator[str]:
    """Another empty database on the same backend as ``database_url`` (dropped after, for PostgreSQL)."""
    if database_url.startswith("sqlite"):
        yield sqlite_url(directory)
        return
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    server_url = _with_database(database_url, "postgres")
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(database_url, name)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database for the module: a SQLite file, or a new PostgreSQL database dropped after."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path_factory.mktemp("sqlite"))
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def gateway_env(provider_env: dict[str, str], database_url: str, **extra: str) -> dict[str, str]:
    """A gateway on the built-in model groups, with the admin API on and its own database."""
    return {
        "GATEWAY_CONFIG": "",
        "LOG_LEVEL": "WARNING",
        **provider_env,
        "DATABASE_URL": database_url,
        "ADMIN_API_KEY": ADMIN_API_KEY,
        **extra,
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def public_pem(private_key: Any) -> str:
    data: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()

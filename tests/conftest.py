"""Shared fixtures: fake providers on loopback, and a gateway started against them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.fakes.upstream import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, sqlite_url
from tests.services import RedisServer, postgres_service, redis_service

pytest_plugins = [
    "tests.fakes.fixtures",
    "tests.sdk_support",
    "tests.messages_support",
    "tests.admission_support",
    "tests.cli_support",
]

StartGateway = Callable[..., GatewayServer]


# The modules whose async tests run on both event loops: code that touches transports directly, where
# uvloop's classes differ from asyncio's (the gateway serves on uvloop).
BOTH_LOOPS = ("test_transport.py",)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    if item.path.name in BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
def fakes(openai_fake: FakeProvider, anthropic_fake: FakeProvider, groq_fake: FakeProvider) -> dict[str, FakeProvider]:
    return {"openai": openai_fake, "anthropic": anthropic_fake, "groq": groq_fake}


@pytest.fixture
def fake_env(fakes: dict[str, FakeProvider], tmp_path: Path) -> dict[str, str]:
    """Environment pointing the gateway at the three fakes, with the built-in model groups.

    Each test gets its own SQLite database, and the admin API is on (``tests.identity_support.create_key``).
    """
    env = {
        "GATEWAY_CONFIG": "",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
    }
    for fake in fakes.values():
        env.update(fake.env)
    return env


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Start gateways with a given environment (and ``GatewayServer`` options); each is stopped after the test."""
    started: list[GatewayServer] = []

    def start(env: Mapping[str, str], **options: Any) -> GatewayServer:
        server = GatewayServer(env, **options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def gateway(start_gateway: StartGateway, fake_env: dict[str, str]) -> GatewayServer:
    return start_gateway(fake_env)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The session's shared Redis (see tests/services.py). Tests isolate themselves by key prefix."""
    with redis_service() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's PostgreSQL server URL (see tests/services.py)."""
    with postgres_service() as url:
        yield url


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    """A private redis-server on a free port, for tests that stop or break it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()

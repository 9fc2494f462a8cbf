"""``llm-gateway usage --user U [--month YYYY-MM]`` prints what ``GET /admin/usage`` answers.

Runs once on SQLite and once on PostgreSQL, against a gateway that shares the database and Redis. With
``REDIS_URL`` the command reads the live reservations too; without it they show as 0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_gateway import tokens
from llm_gateway.cli import main
from tests.fakes import Delay, FakeProvider, Reply
from tests.harness import GatewayServer
from tests.identity_support import (
    create_key,
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    gateway_env,
)
from tests.limits_support import MODEL, admin_usage, chat_body, drop_prefix, set_user, unique_prefix, wait_for
from tests.pricing_support import spend_usd

pytestmark = pytest.mark.integration

DEFAULT_BUDGET = "12345"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
def redis_prefix(redis_url: str, database_url: str) -> Iterator[str]:  # noqa: F811
    """One per backend: counters and cached answers of the SQLite run must not leak into the PostgreSQL one."""
    prefix = unique_prefix("cli-usage")
    yield prefix
    drop_prefix(redis_url, prefix)


@pytest.fixture(scope="module")
def gateway(
    database_url: str,  # noqa: F811
    upstream: FakeProvider,
    redis_url: str,
    redis_prefix: str,
) -> Iterator[GatewayServer]:
    env = gateway_env(
        upstream.env,
        database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        DEFAULT_MONTHLY_TOKEN_BUDGET=DEFAULT_BUDGET,
    )
    with GatewayServer(env) as server:
        yield server


@pytest.fixture
def cli(
    database_url: str,  # noqa: F811
    redis_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """``usage(*args, redis=True)``: run ``llm-gateway usage ARGS`` in-process; (exit code, JSON or None)."""
    for name in ("ADMIN_API_KEY", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL", "REDIS_URL", "REDIS_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GATEWAY_CONFIG", "")
    monkeypatch.setenv("DEFAULT_MONTHLY_TOKEN_BUDGET", DEFAULT_BUDGET)

    class Cli:
        err = ""

        def __call__(self, *args: str, redis: bool = True) -> tuple[int, Any]:
            with monkeypatch.context() as patch:
                if redis:
                    patch.setenv("REDIS_URL", redis_url)
                    patch.setenv("REDIS_PREFIX", redis_prefix)
                code = main(["usage", *args])
            captured = capsys.readouterr()
            self.err = captured.err
            return code, json.loads(captured.out) if captured.out.strip() else None

    return Cli()


def spend(gateway: GatewayServer, key: str, *contents: str) -> None:
    for content in contents:
        answer = httpx.post(
            f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=chat_body(content)
        )
        assert answer.status_code == 200, answer.text


def cli_sees(cli: Any, user: str, requests: int, *args: str) -> Any:
    """The command reads the database only: wait for the gateway's writer to have flushed the rows."""

    def probe() -> Any:
        code, report = cli("--user", user, *args)
        assert code == 0, cli.err
        return report if report["requests"] == requests else None

    return wait_for(probe, what=f"{requests} requests of {user} in the database")


def test_usage_agrees_with_the_admin_api(cli: Any, gateway: GatewayServer) -> None:
    set_user(gateway.base_url, "carla", monthly_token_budget=5000)
    key = create_key(gateway.base_url, "carla")
    spend(gateway, key, "one", "two")
    printed = cli_sees(cli, "carla", 2)
    assert printed == admin_usage(gateway.base_url, "carla")
    assert printed["budget_tokens"] == 5000
    assert (printed["used_tokens"], printed["reserved_tokens"], printed["remaining_tokens"]) == (36, 0, 4964)
    assert printed["by_model"] == {
        MODEL: {
            "prompt_tokens": 22,
            "completion_tokens": 14,
            "requests": 2,
            "spend_usd": spend_usd(MODEL, (11, 7), (11, 7)),
        }
    }
    assert "budget_usd" not in printed  # no US dollar budget applies
    # The same without Redis: nothing is in flight, so nothing differs.
    assert cli("--user", "carla", redis=False) == (0, printed)


def test_usage_of_another_month_and_of_a_user_without_overrides(cli: Any, gateway: GatewayServer) -> None:
    key = create_key(gateway.base_url, "dmitri")
    spend(gateway, key, "hello")
    printed = cli_sees(cli, "dmitri", 1)
    assert printed == admin_usage(gateway.base_url, "dmitri")
    assert printed["budget_tokens"] == int(DEFAULT_BUDGET)

    code, old = cli("--user", "dmitri", "--month", "2001-02")
    assert code == 0
    assert old == admin_usage(gateway.base_url, "dmitri", "2001-02")
    assert old == {
        "user_id": "dmitri",
        "month": "2001-02",
        "budget_tokens": int(DEFAULT_BUDGET),
        "used_tokens": 0,
        "reserved_tokens": 0,
        "remaining_tokens": int(DEFAULT_BUDGET),
        "requests": 0,
        "spend_usd": "0.000000",
        "by_model": {},
    }
    assert cli("--user", "nobody-yet")[1]["requests"] == 0


def test_usage_shows_live_reservations_from_redis(cli: Any, gateway: GatewayServer, upstream: FakeProvider) -> None:
    set_user(gateway.base_url, "elena", monthly_token_budget=5000)
    key = create_key(gateway.base_url, "elena")
    before = upstream.count
    upstream.push(Delay(2.0, Reply()))
    body = chat_body("slow", max_tokens=100)
    worker = threading.Thread(
        target=httpx.post,
        args=(f"{gateway.base_url}/v1/chat/completions",),
        kwargs={"headers": {"x-api-key": key}, "json": body, "timeout": 20},
    )
    worker.start()
    try:
        wait_for(lambda: upstream.count > before, what="the request at the upstream")
        held = tokens.estimate_prompt_tokens(body, MODEL) + 100
        code, printed = cli("--user", "elena")
        assert code == 0, cli.err
        assert printed == admin_usage(gateway.base_url, "elena")
        assert (printed["reserved_tokens"], printed["remaining_tokens"]) == (held, 5000 - held)
        # Without REDIS_URL the command cannot see an embedded server's memory: reserved shows as 0.
        code, offline = cli("--user", "elena", redis=False)
        assert (offline["reserved_tokens"], offline["remaining_tokens"]) == (0, 5000)
    finally:
        worker.join(timeout=20)


def test_usage_refuses_a_malformed_month(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("--user", "carla", "--month", "2025-13")
    assert exited.value.code == 2
    assert "expected YYYY-MM" in capsys.readouterr().err

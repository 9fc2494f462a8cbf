"""``llm-gateway keys|users|db`` against the gateway's database, no server needed; it agrees with the admin API.

Runs once on SQLite and once on PostgreSQL. Most calls run ``main()`` in-process (fast); one test
runs the real command in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_gateway.store.db import head_revision
from tests.fakes import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import (
    ADMIN_HEADERS,
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    gateway_env,
)

pytestmark = pytest.mark.integration

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[GatewayServer]:  # noqa: F811
    with FakeProvider("openai") as upstream, GatewayServer(gateway_env(upstream.env, database_url)) as server:
        yield server


def admin(gateway: GatewayServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{gateway.base_url}/admin{path}", headers=ADMIN_HEADERS, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def chat_status(gateway: GatewayServer, key: str) -> int:
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"x-api-key": key}, json=CHAT)
    return response.status_code


def test_a_key_made_by_the_cli_works_and_lists_the_same_everywhere(cli: Any, gateway: GatewayServer) -> None:
    code, created = cli(
        "keys", "create", "--user", "gina", "--name", "ci", "--models", "gpt-4o-mini, gpt-4o", "--budget", "900",
        "--rpm", "9", "--expires", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0
    key = created.pop("key")
    assert created["models"] == ["gpt-4o-mini", "gpt-4o"] and created["expires_at"] == "2099-01-01T00:00:00Z"
    assert chat_status(gateway, key) == 200

    from_api = admin(gateway, "GET", "/keys", params={"user_id": "gina"})
    assert from_api == {"object": "list", "data": [{**created, "revoked_at": None, "last_used_at": None}]}
    assert cli("keys", "list", "--user", "gina") == (0, from_api)

    made_by_api = admin(gateway, "POST", "/keys", json={"user_id": "gina"})
    code, listed = cli("keys", "list")
    assert code == 0 and made_by_api["id"] in {k["id"] for k in listed["data"]}
    assert made_by_api["key"] not in json.dumps(listed)


def test_a_cli_revocation_reaches_a_running_gateway_within_a_second(cli: Any, gateway: GatewayServer) -> None:
    """No Redis here: the server trusts its cache for at most a second, so the CLI needs no channel."""
    _, created = cli("keys", "create", "--user", "hank")
    assert chat_status(gateway, created["key"]) == 200  # cached as good
    code, revoked = cli("keys", "revoke", created["id"])
    revoked_at = time.monotonic()
    assert code == 0 and revoked["revoked_at"] is not None and "key" not in revoked
    while chat_status(gateway, created["key"]) != 401:
        assert time.monotonic() - revoked_at < 1.25, "the revocation did not reach the gateway within a second"
        time.sleep(0.02)
    assert admin(gateway, "GET", "/keys", params={"user_id": "hank"})["data"][0]["revoked_at"] == revoked["revoked_at"]


def test_cli_and_admin_api_agree_on_users(cli: Any, gateway: GatewayServer) -> None:
    code, set_by_cli = cli("users", "set", "ivy", "--budget", "1234", "--rpm", "7")
    assert code == 0 and (set_by_cli["monthly_token_budget"], set_by_cli["rate_limit_per_minute"]) == (1234, 7)
    assert admin(gateway, "GET", "/users/ivy") == set_by_cli
    assert cli("users", "show", "ivy") == (0, set_by_cli)

    set_by_api = admin(gateway, "PUT", "/users/ivy", json={"monthly_token_budget": None})
    assert cli("users", "show", "ivy") == (0, set_by_api)
    code, kept = cli("users", "set", "ivy", "--rpm", "default")
    assert code == 0 and (kept["monthly_token_budget"], kept["rate_limit_per_minute"]) == (None, None)


def test_cli_errors_are_short_and_say_what_is_wrong(cli: Any) -> None:
    assert cli("keys", "revoke", "no-such-id") == (1, None)
    assert cli.err == "llm-gateway: no API key with id 'no-such-id'\n"
    assert cli("keys", "create", "--user", "x", "--expires", "2001-01-01") == (2, None)
    assert cli.err == "llm-gateway: expires_at: Value error, must be in the future\n"
    assert cli("keys", "create", "--user", "anon:1.2.3.4") == (2, None)
    assert cli("users", "show", "nobody") == (1, None)
    with pytest.raises(SystemExit):
        cli("users", "set", "x", "--budget", "lots")


def test_the_real_command_migrates_creates_and_prints_the_key_once(
    tmp_path: Path,
    gateway: GatewayServer,
    database_url: str,  # noqa: F811
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_URL", "_SECRET"))}
    env.update({"DATABASE_URL": database_url, "GATEWAY_CONFIG": ""})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "llm_gateway", *args]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["revision"] == head_revision()
    created = run("keys", "create", "--user", "jack")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    assert "shown only once" in created.stderr and key not in created.stderr
    assert chat_status(gateway, key) == 200

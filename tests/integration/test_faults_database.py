"""PostgreSQL down at start-up and mid-run: the gateway listens all the same, degrades to 503, recovers by itself.

A throw-away cluster (``tests/services.py``) that the tests stop and start again on the same port
and data directory, as an outage or a restart of the database server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, create_key
from tests.serve_support import start_serve, user_env, wait_for
from tests.services import PostgresServer, _postgres_bin, _unprivileged, _wait_for_port, free_port

pytestmark = pytest.mark.integration

SECRET_PASSWORD = "pw-5ecret-never-logged"  # trust auth ignores it; the logs must not show it
READY_TIMEOUT_SECONDS = 30.0
LEDGER_TIMEOUT_SECONDS = 30.0  # the ledger's retry backoff is capped at 10 s


class RestartablePostgres(PostgresServer):
    """``PostgresServer`` whose server can be stopped (fast shutdown) and started again, keeping its data."""

    def init(self) -> RestartablePostgres:
        """Create the cluster without starting the server."""
        initdb = _postgres_bin("initdb")
        if initdb is None or _postgres_bin("postgres") is None:
            pytest.skip("PostgreSQL (initdb, postgres) is not installed")
        assert initdb is not None
        import shutil
        import tempfile

        self.datadir = tempfile.mkdtemp(prefix="gw-pg-")
        run_as = _unprivileged()
        if run_as:
            shutil.chown(self.datadir, user=run_as)
        subprocess.run(
            [*self._prefix(), initdb, "-D", self.datadir, "-U", "postgres", "-A", "trust"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def launch(self) -> RestartablePostgres:
        postgres = _postgres_bin("postgres")
        assert postgres is not None and self.process is None
        command = [postgres, "-D", self.datadir, "-p", str(self.port), "-h", "127.0.0.1", "-k", self.datadir]
        self.process = subprocess.Popen(
            [*self._prefix(), *command, "-c", "fsync=off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self.process)
        return self

    def halt(self) -> None:
        """Fast shutdown (SIGINT): sessions are ended at once, as in a crash or a failover."""
        if self.process is None:
            return
        # The postmaster itself: as root it runs under runuser, which does not pass SIGINT on.
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((Path(self.datadir) / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        self.halt()
        super().stop()

    @staticmethod
    def _prefix() -> list[str]:
        run_as = _unprivileged()
        return ["runuser", "-u", run_as, "--"] if run_as else []

    def url_with_password(self) -> str:
        return f"postgresql://postgres:{SECRET_PASSWORD}@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def pg() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres().init()
    try:
        yield server
    finally:
        server.stop()


def chat(base_url: str, key: str | None, text: str, timeout: float = 10.0) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


async def _ledger_request_ids(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return [row["request_id"] for row in await connection.fetch("SELECT request_id FROM usage_ledger")]
    finally:
        await connection.close()


def ledger_request_ids(url: str) -> list[str]:
    return asyncio.run(_ledger_request_ids(url))


def unavailable_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "database unavailable" in line]


# A key of the right shape, unknown to the database: resolving it needs the database.
SOME_KEY = "sk-gw-AAAAAAAAAAAA-" + "B" * 32


def get_json(url: str, **options: Any) -> tuple[int, Any]:
    response = httpx.get(url, timeout=5, **options)
    return response.status_code, response.json()


def test_serve_binds_at_once_with_the_database_down_and_serves_when_it_comes_back(
    pg: RestartablePostgres, fake_env: dict[str, str], tmp_path: Path
) -> None:
    """DESIGN.md, Operations: a gateway started while its database is down listens at once (``/health`` 200,
    ``/ready`` 503), answers what needs the database 503 ``service_unavailable`` in the caller's envelope
    (never a hang, never a 500), connects and migrates in the background (one log line per attempt, no secret)
    and serves normally once the database is up, without a restart.

    Protections: ``open_database(background=True)`` in the lifespan and no wait in ``cli._prepare`` (without
    them nothing answers on the port); ``Database.require_ready`` in each store (without it a key lookup or
    an admin call queries tables that do not exist yet); ``Readiness`` behind ``/ready``.
    """
    port = free_port()
    env = user_env(fake_env, {"DATABASE_URL": pg.url_with_password(), "PORT": str(port), "HOST": "127.0.0.1"})
    env |= {"LOG_LEVEL": "INFO", "ADMIN_API_KEY": ADMIN_API_KEY}
    log_path = tmp_path / "serve.log"
    process = start_serve(env, tmp_path, log_path)
    base_url = f"http://127.0.0.1:{port}"
    try:
        # The database stays down all along: the port answers all the same.
        wait_for(f"{base_url}/health", process, log_path, READY_TIMEOUT_SECONDS)
        status, body = get_json(f"{base_url}/ready")
        assert (status, body["status"], list(body["checks"])) == (503, "unavailable", ["database"]), body
        assert str(pg.port) not in body["checks"]["database"] and "postgres" not in body["checks"]["database"]

        started = time.monotonic()
        for response in (
            chat(base_url, SOME_KEY, "a key needs the key store"),
            chat(base_url, None, "an anonymous budget needs the ledger"),
            httpx.post(f"{base_url}/admin/keys", headers=ADMIN_HEADERS, json={"user_id": "u"}, timeout=5),
        ):
            assert_unavailable(response)
        messages = httpx.post(
            f"{base_url}/v1/messages",
            headers={"x-api-key": SOME_KEY, "anthropic-version": "2023-06-01"},
            json={"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        assert messages.status_code == 503, messages.text
        assert messages.json()["type"] == "error" and messages.json()["error"]["type"] == "api_error"
        assert time.monotonic() - started < 3.0, "refusals while the database is down must be immediate"
        assert unavailable_lines(log_path.read_text()), "each failed attempt is logged"

        pg.launch()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while (ready := get_json(f"{base_url}/ready"))[0] != 200:
            assert time.monotonic() < deadline, f"not ready once the database was up: {ready}"
            time.sleep(0.2)
        assert ready == (200, {"status": "ready"})
        response = chat(base_url, create_key(base_url), "hello")
        assert response.status_code == 200, response.text
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log_path.read_text()
    lines = unavailable_lines(text)
    assert f"127.0.0.1:{pg.port}/postgres" in lines[0] and "retrying in" in lines[0], lines[0]
    assert SECRET_PASSWORD not in text
    assert "Traceback" not in text, text


def _chat_ok(base_url: str, key: str | None, text: str, answered: list[str]) -> httpx.Response:
    started = time.monotonic()
    response = chat(base_url, key, text)
    assert time.monotonic() - started < 3.0, "a database outage must not hold requests"
    if response.status_code == 200:
        answered.append(response.headers["x-request-id"])
    return response


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"


def test_database_down_mid_run_degrades_to_503_and_recovers_without_a_restart(
    pg: RestartablePostgres, start_gateway: Any, fake_env: dict[str, str]
) -> None:
    """Protections, each checked below:
    - known keys keep working past their 1 s cache TTL (``CachedLookup`` stale_if: without it they get 503);
    - an unknown key is 503 ``service_unavailable``, never 401 (``KeyLookup._load`` maps database errors);
    - a caller whose budget must be read from the ledger is 503, not 500 (``UsageLedger._reading``);
    - rows of requests served meanwhile are queued and written once it is back (``UsageLedger`` retry);
    - no refusal outlives the outage: failed lookups are not cached.
    """
    pg.launch()
    gateway = start_gateway({**fake_env, "DATABASE_URL": pg.url})
    cached_key = create_key(gateway.base_url, "alice")
    uncached_key = create_key(gateway.base_url, "bob")  # created, never used: not in the key cache
    answered: list[str] = []
    assert _chat_ok(gateway.base_url, cached_key, "before", answered).status_code == 200
    time.sleep(0.5)  # the first row reaches the database

    pg.halt()
    outage_ends = time.monotonic() + 3.0  # well past the 1 s key cache TTL of a gateway without Redis
    served_during = 0
    while time.monotonic() < outage_ends:
        response = _chat_ok(gateway.base_url, cached_key, f"during {served_during}", answered)
        assert response.status_code == 200, response.text
        served_during += 1
        time.sleep(0.1)
    assert served_during >= 5
    status, body = get_json(f"{gateway.base_url}/ready")  # out of rotation, though cached keys are still served
    assert (status, body["status"], list(body["checks"])) == (503, "unavailable", ["database"]), body
    assert_unavailable(_chat_ok(gateway.base_url, uncached_key, "unknown key", answered))
    assert_unavailable(  # the admin API too: 503, not 500 (app.py, ``store_failed``)
        httpx.post(f"{gateway.base_url}/admin/keys", headers=ADMIN_HEADERS, json={"user_id": "u"}, timeout=5)
    )
    assert_unavailable(_chat_ok(gateway.base_url, None, "anonymous: budget from the ledger", answered))

    pg.launch()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while (response := _chat_ok(gateway.base_url, uncached_key, "after", answered)).status_code != 200:
        assert_unavailable(response)  # only ever 503 on the way back, never 401
        assert time.monotonic() < deadline, "the gateway did not recover once the database was back"
        time.sleep(0.2)
    assert _chat_ok(gateway.base_url, None, "anonymous after", answered).status_code == 200
    while (ready := get_json(f"{gateway.base_url}/ready"))[0] != 200:  # its last answer is kept for a second
        assert time.monotonic() < deadline, f"not ready once the database was back: {ready}"
        time.sleep(0.2)
    assert ready == (200, {"status": "ready"})
    assert _chat_ok(gateway.base_url, cached_key, "cached after", answered).status_code == 200

    deadline = time.monotonic() + LEDGER_TIMEOUT_SECONDS
    while sorted(ids := ledger_request_ids(pg.url)) != sorted(answered):
        assert time.monotonic() < deadline, f"ledger has {len(ids)} rows, {len(answered)} requests were served"
        time.sleep(0.5)
    assert len(answered) == served_during + 4

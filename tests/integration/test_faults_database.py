"""PostgreSQL down at start-up and mid-run: the gateway waits, degrades to 503, and recovers by itself.

A throw-away cluster (``tests/services.py``) that the tests stop and start again on the same port
and data directory, as an outage or a restart of the database server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, create_key
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


def unreachable_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "database unreachable" in line]


def test_serve_waits_for_a_database_that_is_not_up_yet(
    pg: RestartablePostgres, fake_env: dict[str, str], tmp_path: Path
) -> None:
    """Protection: ``Database.wait_until_reachable`` in ``serve`` (cli._prepare) -- without it the process
    exits at once with a traceback (a crash loop under a supervisor), and the log line must name no secret."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_URL"))}
    env |= {**fake_env, "DATABASE_URL": pg.url_with_password(), "PORT": str(port), "HOST": "127.0.0.1"}
    env |= {"LOG_LEVEL": "INFO", "ADMIN_API_KEY": ADMIN_API_KEY}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while len(lines := unreachable_lines(log_path.read_text())) < 3:  # one line per attempt: not silent
            assert process.poll() is None, log_path.read_text()  # waiting, not crashed
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert f"127.0.0.1:{pg.port}/postgres" in lines[0] and "retrying in" in lines[0]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base_url}/health", timeout=1)  # not serving without its database

        pg.launch()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the gateway did not start once the database was up"
            time.sleep(0.2)
        response = chat(base_url, create_key(base_url), "hello")
        assert response.status_code == 200, response.text
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log_path.read_text()
    assert SECRET_PASSWORD not in text
    assert "Traceback" not in text, text


def test_the_app_lifespan_waits_for_the_database_too(
    pg: RestartablePostgres, fake_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Protection: ``open_database(..., wait=True)`` in the lifespan (uvicorn --factory, each worker) --
    without it start-up fails at once and the harness reports that the gateway did not start."""
    caplog.set_level(logging.WARNING, logger="llm_gateway.store.db")
    starter = threading.Timer(2.0, pg.launch)
    starter.start()
    try:
        gateway = GatewayServer({**fake_env, "DATABASE_URL": pg.url_with_password()})
        try:
            gateway.start()  # allows 10 s: the database comes up after 2
            assert chat(gateway.base_url, create_key(gateway.base_url), "hello").status_code == 200
        finally:
            gateway.stop()
    finally:
        starter.join(timeout=30)
    lines = [r.getMessage() for r in caplog.records if "database unreachable" in r.getMessage()]
    assert lines, "each failed attempt is logged"
    assert not any(SECRET_PASSWORD in line for line in lines)


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
    assert_unavailable(_chat_ok(gateway.base_url, uncached_key, "unknown key", answered))
    assert_unavailable(_chat_ok(gateway.base_url, None, "anonymous: budget from the ledger", answered))

    pg.launch()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while (response := _chat_ok(gateway.base_url, uncached_key, "after", answered)).status_code != 200:
        assert_unavailable(response)  # only ever 503 on the way back, never 401
        assert time.monotonic() < deadline, "the gateway did not recover once the database was back"
        time.sleep(0.2)
    assert _chat_ok(gateway.base_url, None, "anonymous after", answered).status_code == 200
    assert _chat_ok(gateway.base_url, cached_key, "cached after", answered).status_code == 200

    deadline = time.monotonic() + LEDGER_TIMEOUT_SECONDS
    while sorted(ids := ledger_request_ids(pg.url)) != sorted(answered):
        assert time.monotonic() < deadline, f"ledger has {len(ids)} rows, {len(answered)} requests were served"
        time.sleep(0.5)
    assert len(answered) == served_during + 4

"""Helpers for the limits tests through the gateway: `serve` subprocesses, the admin calls, the ledger's rows.

``ServedGateway`` runs ``python -m llm_gateway serve`` as a user does; ``ledger_rows`` reads the
``usage_ledger`` table of a SQLite database directly, as an operator would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, sqlite_url
from tests.services import free_port

START_TIMEOUT_SECONDS = 60.0  # a loaded CI machine; a healthy start takes a few seconds
RATELIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
)
MODEL = "gpt-4o-mini"
ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def chat_body(content: str = "hi", *, max_tokens: int | None = 7, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def unique_prefix(label: str) -> str:
    return f"test:{label}:{uuid.uuid4().hex[:10]}:"


def drop_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key a test's gateways made in the shared Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)
    finally:
        client.close()


def set_user(base_url: str, user_id: str, **limits: int | None) -> None:
    response = httpx.put(f"{base_url}/admin/users/{user_id}", headers=ADMIN_HEADERS, json=limits)
    assert response.status_code == 200, response.text


def admin_usage(base_url: str, user_id: str, month: str | None = None) -> dict[str, Any]:
    params = {"user_id": user_id} if month is None else {"user_id": user_id, "month": month}
    response = httpx.get(f"{base_url}/admin/usage", headers=ADMIN_HEADERS, params=params)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def wait_for(probe: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(interval)


def assert_ratelimit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """All five ``x-ratelimit-*`` headers, well formed; returns them."""
    found = {name: headers.get(name) for name in RATELIMIT_HEADERS}
    missing = [name for name, value in found.items() if value is None]
    assert not missing, f"missing {missing} in {dict(headers)}"
    for name in ("limit-requests", "remaining-requests", "limit-tokens", "remaining-tokens"):
        assert str(found[f"x-ratelimit-{name}"]).isdigit(), found
    assert re.fullmatch(r"(\d+ms|\d+(\.\d+)?s|\d+m\d+s)", str(found["x-ratelimit-reset-requests"])), found
    return {name: str(value) for name, value in found.items()}


def sqlite_path(database_url: str) -> Path:
    assert database_url.startswith("sqlite:///"), database_url
    return Path(database_url.removeprefix("sqlite:///"))


def ledger_rows(database: Path, **where: Any) -> list[dict[str, Any]]:
    """Rows of ``usage_ledger`` (every column), optionally filtered by equality on columns."""
    clause = " AND ".join(f"{column} = ?" for column in where) or "1 = 1"
    connection = sqlite3.connect(database, timeout=10)
    try:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(f"SELECT * FROM usage_ledger WHERE {clause}", tuple(where.values())).fetchall()
        return [dict(row) for row in rows]
    finally:
        connection.close()


def subprocess_env(env: Mapping[str, str], port: int) -> dict[str, str]:
    """The caller's environment without anything that would point the gateway elsewhere, plus ``env``."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL")) and k not in ("REDIS_URL", "DATABASE_URL", "REDIS_PREFIX")
    }
    return {**inherited, **env, "PORT": str(port), "HOST": "127.0.0.1"}


class ServedGateway:
    """``python -m llm_gateway serve`` on a free loopback port; output goes to ``log``."""

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"gateway-{self.port}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llm_gateway", "serve"],
                env=subprocess_env(env, self.port),
                cwd=workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self) -> ServedGateway:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"the gateway did not become healthy:\n{self.log.read_text()}"
            time.sleep(0.1)

    def sigterm(self, timeout: float = 30.0) -> int:
        """Send SIGTERM and wait for the process to end; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def run_processes(script: str, args: list[Any], processes: int = 2) -> list[Any]:
    """Run ``script`` (``python -c``, ``args`` as JSON in argv[1]) in ``processes`` processes released at once.

    Each prints ``ready``, waits for a line on stdin, then prints a JSON list as its last line; the lists are
    joined. For limits shared through Redis by separate OS processes, as gateway workers share them.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results: list[Any] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        results += json.loads(out.strip().splitlines()[-1])
    return results


def serve_all(envs: Iterable[Mapping[str, str]], workdir: Path) -> list[ServedGateway]:
    """Start several gateways at once (their start-ups overlap) and wait until each is healthy."""
    gateways = [ServedGateway(env, workdir) for env in envs]
    try:
        for gateway in gateways:
            gateway.wait_healthy()
    except BaseException:
        for gateway in gateways:
            gateway.stop()
        raise
    return gateways


@contextmanager
def sharing_redis(
    workdir: Path, redis_url: str, label: str, env: Mapping[str, str], processes: int = 2
) -> Iterator[tuple[list[ServedGateway], str]]:
    """``processes`` gateways sharing one Redis (under a prefix of their own, dropped after) and one SQLite file.

    Yields the gateways and the prefix. ``env`` adds to (or overrides) what they all get: an admin key, quiet
    logs, and a Redis timeout for a loaded machine (the test's clients share the CPU with the gateways).
    """
    prefix = unique_prefix(label)
    shared = {
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": sqlite_url(workdir),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "LIMITS_REDIS_TIMEOUT_SECONDS": "5",
        **env,
    }
    gateways = serve_all([shared] * processes, workdir)
    try:
        yield gateways, prefix
    finally:
        for gateway in gateways:
            gateway.stop()
        drop_prefix(redis_url, prefix)

"""Real Redis and PostgreSQL for the tests, found or started as DESIGN.md says.

Order: ``REDIS_URL`` / ``DATABASE_URL`` when set; else the service on its default local port;
else a throw-away server started from PATH on a free port; else the test is skipped with a
reason naming what to install — except on CI (``CI`` set), where a missing service fails.
Tests that stop or break a server always get their own throw-away instance.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

START_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start (exit code {process.poll()})")
        time.sleep(0.05)


def terminate(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL: a server never outlives its test."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def missing(what: str) -> None:
    """Skip, or fail on CI where nothing may be skipped."""
    message = f"{what} is not available: install it (Debian: apt-get install redis-server postgresql)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class RedisServer:
    """A throw-away ``redis-server`` on a free port; ``stop()``/``start()`` for fault tests."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, grace=10)
            self.process = None


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb + postgres) in a temp dir, trust auth, on a free port."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    datadir: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
        if initdb is None or postgres is None:
            missing("PostgreSQL (initdb, postgres)")
        assert initdb is not None and postgres is not None
        self.datadir = tempfile.mkdtemp(prefix="gw-pg-")
        run_as = _unprivileged()
        if run_as:
            shutil.chown(self.datadir, user=run_as)
        prefix = ["runuser", "-u", run_as, "--"] if run_as else []
        subprocess.run(
            [*prefix, initdb, "-D", self.datadir, "-U", "postgres", "-A", "trust"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.process = subprocess.Popen(
            [
                *prefix,
                postgres,
                "-D",
                self.datadir,
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                self.datadir,
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, grace=15)
            self.process = None
        if self.datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)


def _unprivileged() -> str | None:
    """PostgreSQL refuses to run as root: use the ``postgres`` account when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres").pw_name
    return "nobody"


@contextlib.contextmanager
def redis_service() -> Iterator[str]:
    """A Redis URL for the session: REDIS_URL, else 127.0.0.1:6379, else a throw-away server."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    elif port_open(6379):
        yield "redis://127.0.0.1:6379/0"
    else:
        server = RedisServer().start()
        try:
            yield server.url
        finally:
            server.stop()


@contextlib.contextmanager
def postgres_service() -> Iterator[str]:
    """A PostgreSQL URL for the session: DATABASE_URL (postgresql://), else :5432, else a throw-away cluster."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgresql"):
        yield url
    elif port_open(5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
    else:
        server = PostgresServer().start()
        try:
            yield server.url
        finally:
            server.stop()

"""Throw-away Redis and PostgreSQL for the rows that need the shared shape, on the client core, reaped with the run.

Why a module: the full pipeline, observability and two-worker rows measure the gateway as deployments run it
(Redis for limits and cache, PostgreSQL for keys and the ledger), and none of them may touch a server the
machine already runs (PostgreSQL on 5432, say). Each server is started here once per run, on a free loopback
port, in the run's process group (``postgres`` in the foreground, not ``pg_ctl start``, whose daemon would
leave the group), so it dies with the run however it ends. A missing binary becomes ``Skip``: a row that says
why, not a failed run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness import Bench
from processes import free_port

START_TIMEOUT_S = 30.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Skip(Exception):
    """A section cannot run here; the message says why."""


@dataclass
class Servers:
    """Redis and PostgreSQL, each started on first use and kept for the rest of the run."""

    bench: Bench
    _redis: str | None = None
    _postgres: str | None = None
    _dirs: list[Path] = field(default_factory=list)

    def redis(self) -> str:
        if self._redis is None:
            self._redis = _redis(self.bench)
        return self._redis

    def postgres(self) -> str:
        if self._postgres is None:
            datadir = Path(tempfile.mkdtemp(prefix="llm-gateway-bench-pg-"))
            self._dirs.append(datadir)
            self._postgres = _postgres(self.bench, datadir)
        return self._postgres

    def cleanup(self) -> None:
        """Remove the data directories (call after ``procs.stop_all``: the servers must be gone)."""
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)


def _redis(bench: Bench) -> str:
    """REDIS_URL from the environment (loopback only), else a throw-away redis-server."""
    url = os.environ.get("REDIS_URL")
    if url:
        host = urlsplit(url).hostname or ""
        if host not in LOOPBACK:
            raise Skip(f"REDIS_URL points at {host!r}; the benchmark only sends traffic to loopback")
        return url
    server = shutil.which("redis-server")
    if server is None:
        raise Skip("no REDIS_URL and no redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = bench.procs.start("redis", bench.on_client_core(argv))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise Skip(f"redis-server exited: {child.log_tail(3)}")
        if _redis_ping(port):
            return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.02)
    raise Skip(f"redis-server did not answer PING within {START_TIMEOUT_S:.0f} s")


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pg_binary(name: str) -> str | None:
    """Debian's binaries live in /usr/lib/postgresql/<version>/bin, not always on PATH."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _run_as() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` account (Debian creates it)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres").pw_name
    except KeyError as exc:
        raise Skip("running as root and no 'postgres' account to run PostgreSQL as") from exc
    return ["runuser", "-u", user, "--"]


def _postgres(bench: Bench, datadir: Path) -> str:
    """``initdb`` a cluster in ``datadir`` (trust auth), then ``postgres`` on a free port, loopback only.

    fsync off: the ledger's writes are measured as CPU and round trips, not as this machine's disk."""
    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    if initdb is None or postgres is None:
        raise Skip("no initdb/postgres (apt-get install postgresql)")
    prefix = _run_as()
    if prefix:
        shutil.chown(datadir, user=prefix[2])
    init = subprocess.run(
        [*prefix, initdb, "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        raise Skip(f"initdb failed: {(init.stderr or init.stdout).strip().splitlines()[-1:]}")
    port = free_port()
    options = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    argv = [*prefix, postgres, "-D", str(datadir), "-p", str(port), "-h", "127.0.0.1", "-k", str(datadir), *options]
    child = bench.procs.start("postgres", bench.on_client_core(argv))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise Skip(f"postgres exited: {child.log_tail(3)}")
        if _accepts(port) and "ready to accept connections" in child.log_tail(50):
            return f"postgresql://postgres@127.0.0.1:{port}/postgres"
        time.sleep(0.05)
    raise Skip(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False

"""The pieces of the scale-out proof: a throw-away nginx in front of gateways that can be restarted on their port.

``Nginx`` runs Debian's ``nginx`` binary with a config of its own in a temp dir (pid, logs, temp paths there;
the system's nginx untouched). ``RestartableGateway`` is ``llm-gateway serve`` on a fixed port, so that the
load balancer's upstream list stays right across a SIGTERM and a start.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.limits_support import START_TIMEOUT_SECONDS, subprocess_env
from tests.services import free_port, port_open, terminate

# One line per request: which gateways nginx tried ("a, b" when it went on to the next) and what each said.
ACCESS_LOG_FORMAT = "$status $request_time [$upstream_addr] [$upstream_status] $request_method $uri"


def nginx_binary() -> str:
    """Debian's nginx (``apt-get install nginx``; ``.ci/run`` installs it); a skip (a failure on CI) without it."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        message = "nginx is not available: install it (Debian: apt-get install nginx)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def nginx_config(directory: Path, port: int, upstreams: Sequence[int]) -> str:
    """Round robin over the gateways, passive health checks, streams passed through unbuffered.

    A connection refused (a gateway stopping or not started yet: its listening socket is closed), or not made
    within ``proxy_connect_timeout``, is sent to the next gateway, POST included: nothing reached the first.
    Once a POST has been sent, nginx never sends it again (no ``non_idempotent``): the gateway that accepted it
    answers it (its graceful shutdown), or the client sees the failure -- a chat request is not safe to run
    twice (two upstream calls, two charges). ``http_502``/``http_503`` therefore retry only GETs.
    ``max_fails=1 fail_timeout=2s``: one refusal keeps a gateway out of the rotation for two seconds, then it
    is tried again. No upstream ``keepalive``: an idle pooled connection that a stopping gateway closes while
    nginx reuses it would fail a POST after it was sent.
    """
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstreams)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers as the caller: the temp dir is not world-readable
    return f"""{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '{ACCESS_LOG_FORMAT}';
    access_log {directory}/access.log upstreams;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream gateways {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_request_buffering on;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries {len(upstreams)};
            proxy_next_upstream_timeout 10s;
            add_header x-upstream $upstream_addr always;
        }}
    }}
}}
"""


class Nginx:
    """A throw-away nginx on a free loopback port, in the foreground, everything of its own under ``directory``."""

    def __init__(self, directory: Path, upstreams: Sequence[int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = directory / "nginx.conf"
        self.config.write_text(nginx_config(directory, self.port, upstreams))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = nginx_binary()
        command = [binary, "-p", str(self.directory), "-c", str(self.config), "-e", str(self.directory / "error.log")]
        with (self.directory / "nginx.out").open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{self.errors()}")
            time.sleep(0.05)
        return self

    def errors(self) -> str:
        return "".join(
            path.read_text() for path in (self.directory / "nginx.out", self.directory / "error.log") if path.exists()
        )

    def access_log(self) -> list[str]:
        path = self.directory / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, grace=10)
            self.process = None


def port_to_keep() -> int:
    """A free port below the kernel's ephemeral range. A gateway gives its port up while it restarts; a port
    from ``free_port`` (an ephemeral one) could meanwhile become the local end of one of the many outgoing
    connections (nginx's to the other gateways, the gateways' to the fake and to Redis), and the gateway would
    fail to start with "address already in use". A deployment's fixed port (5000) is outside that range too."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10_000, max(low, 10_001))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()


async def ready(base_url: str) -> bool:
    """``GET /ready`` 200: the gateway has reached and migrated its database and Redis answers; what a rolling
    restart waits for before it stops the next one."""
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        try:
            return (await client.get("/ready")).status_code == 200
        except httpx.TransportError:
            return False


class RestartableGateway:
    """``python -m llm_gateway serve`` (one worker) on a port of its own that it keeps across restarts."""

    def __init__(self, env: Mapping[str, str], workdir: Path, name: str) -> None:
        self.env, self.workdir, self.name = env, workdir, name
        self.port = port_to_keep()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """The output of the current (or last) run."""
        return self.workdir / f"{self.name}-run{self.runs}.log"

    def logs(self) -> list[str]:
        """The output of every run so far."""
        return [(self.workdir / f"{self.name}-run{run}.log").read_text() for run in range(1, self.runs + 1)]

    def start(self) -> RestartableGateway:
        assert self.process is None or self.process.poll() is not None
        self.runs += 1
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llm_gateway", "serve"],
                env=subprocess_env(self.env, self.port),
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return self

    async def wait_ready(self) -> float:
        """Seconds from now until ``ready``; fails with the log if the process dies or takes too long."""
        started = time.monotonic()
        while not await ready(self.base_url):
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            assert time.monotonic() - started < START_TIMEOUT_SECONDS, f"{self.name} not ready:\n{self.log.read_text()}"
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def sigterm(self, timeout: float = 45.0) -> float:
        """SIGTERM, as an orchestrator sends it, and wait for the exit; the seconds it took to drain and exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, timeout)
        # uvicorn re-raises the signal once its shutdown is complete: the conventional "ended by SIGTERM".
        assert code in (0, -signal.SIGTERM), f"{self.name} exited with {code}:\n{self.log.read_text()}"
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process, grace=30)

"""SIGTERM while clients keep opening connections: each connection is answered or refused, none reset.

A load balancer connects and sends its request at once; if the gateway then drops the connection unread (as
uvicorn did with those still queued in the kernel or just accepted), the request was sent and lost, and a
proxy may not send a POST again. ``http_server.DrainingServer`` and ``BoundedHttpToolsProtocol.shutdown``
answer them; after that connecting is refused, which a proxy retries elsewhere. Before the fix, 28 or 29 of
30 concurrent clients lost a request at every SIGTERM here; with ``--workers 2`` (the parent kept the shared
socket open, its queue unread, until it exited) all 30.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from llm_gateway.http_server import refuse_new_handshakes
from tests.services import free_port, port_open

pytestmark = pytest.mark.integration

CLIENTS = 30
START_TIMEOUT_SECONDS = 60.0
REQUEST = b"GET /health HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n"


async def one_request(port: int) -> str:
    """``answered``, ``refused``, or ``lost`` (the request was sent and no answer came)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return "refused"
    try:
        writer.write(REQUEST)
        await writer.drain()
        answer = await reader.read()
        return "answered" if answer.startswith(b"HTTP/1.1 200") else "lost"
    except OSError:  # reset
        return "lost"
    finally:
        writer.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_answers_or_refuses_every_connection(tmp_path: Path, redis_url: str, workers: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_URL"))}
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "PROMETHEUS_")) and k != "GATEWAY_CONFIG"}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db", "PORT": str(port), "HOST": "127.0.0.1"}
    env |= {"LOG_LEVEL": "WARNING", "TMPDIR": str(tmp_path)}
    if workers > 1:  # several workers need shared limits
        env |= {"REDIS_URL": redis_url, "REDIS_PREFIX": f"shutdown-connections-{uuid.uuid4().hex[:8]}:"}
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve", "--workers", str(workers)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not port_open(port):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        outcomes: Counter[str] = Counter()
        exited = asyncio.Event()

        async def client() -> None:
            while not exited.is_set():
                outcomes[await one_request(port)] += 1

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
        exited.set()
        await asyncio.wait_for(asyncio.gather(*clients), timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert outcomes["lost"] == 0, (outcomes, log.read_text())
    assert outcomes["answered"] > 0 and outcomes["refused"] > 0, outcomes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a socket filter: Linux only")
def test_a_listener_refusing_new_handshakes_keeps_its_queue() -> None:
    """What ``DrainingServer`` relies on: after ``refuse_new_handshakes`` a new client's SYN is dropped (it would
    send it again a second later), a connection already queued is still accepted with its request, and once
    the socket is closed a new client is refused."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address = listener.getsockname()
        queued = socket.create_connection(address)
        queued.sendall(REQUEST)
        assert refuse_new_handshakes(listener)
        with socket.socket() as late, pytest.raises(TimeoutError):
            late.settimeout(0.3)
            late.connect(address)
        accepted, _ = listener.accept()
        with accepted, queued:
            assert accepted.recv(len(REQUEST)) == REQUEST
    with socket.socket() as after, pytest.raises(ConnectionRefusedError):
        after.connect(address)

"""The gateway, started for real: uvicorn on a free loopback port, in a thread of the test process.

Tests talk to it over HTTP with the official ``openai`` SDK or httpx, exactly as users do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType

import uvicorn

from llm_gateway.app import create_app
from llm_gateway.settings import load_settings
from llm_gateway.telemetry import Telemetry

START_TIMEOUT_SECONDS = 10.0


class GatewayServer:
    def __init__(self, env: Mapping[str, str], *, telemetry: Telemetry | None = None) -> None:
        """``telemetry``: one the test built (e.g. with in-memory exporters) instead of the environment's."""
        self.config = load_settings(dict(env))
        # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets that say TCP, and
        # without it a response written as head then body waits ~40 ms for the client's delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(self.config, telemetry=telemetry)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                proxy_headers=False,  # as `serve` does: only TRUSTED_PROXIES decides
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(target=self._run, name=f"gateway-{self.port}", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> GatewayServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

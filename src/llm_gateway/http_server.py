"""uvicorn's server, with a shutdown that loses no connection a load balancer has already opened.

uvicorn closes its listening socket at SIGTERM, and the kernel resets the connections it had completed but
not handed over yet, and the handshakes under way: their requests were sent, so a proxy may not send a POST
elsewhere (nginx answers 502). Here those connections are accepted and answered first; after that a new
connection is refused, which a proxy retries on another gateway. With ``--workers``, the workers share the
parent's socket, which stayed open (accepting into a queue no one read) until the parent exited: the parent
now refuses new handshakes and closes its copy before it stops them. ``llm-gateway serve`` runs it (``run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess, Process

SO_ATTACH_FILTER = 26  # Linux, <asm-generic/socket.h>
# Classic BPF, run on each packet that reaches the listening socket (the TCP header first): drop a SYN that
# opens a connection (SYN set, ACK clear) and keep everything else, so that handshakes under way complete.
# A client whose SYN is dropped sends it again a second later, finds the socket closed, and is refused.
_DROP_NEW_SYN = (
    (0x30, 0, 0, 13),  # ldb [13]: the TCP flags
    (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
    (0x15, 0, 1, 0x02),  # jeq #SYN: to the next instruction, else skip it
    (0x06, 0, 0, 0),  # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: keep, whole
)
# How long handshakes under way get to complete once new ones are refused: a round trip, with room to spare.
HANDSHAKE_GRACE_SECONDS = 0.1


def refuse_new_handshakes(listener: socket.socket) -> bool:
    """Make the kernel drop new connection attempts to ``listener`` and finish those it has begun; False where
    that cannot be done (not Linux, not TCP): closing the socket then resets the handshakes under way."""
    if not sys.platform.startswith("linux") or listener.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in _DROP_NEW_SYN))
    program = struct.pack("@HP", len(_DROP_NEW_SYN), ctypes.addressof(code))  # struct sock_fprog; copied by the kernel
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
    except OSError:
        return False
    return True


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose shutdown refuses new handshakes, lets those under way finish, accepts what its
    listening sockets have queued, and only then closes them. The connections it accepts are asked to finish
    like every other (``http_protocol.BoundedHttpToolsProtocol.shutdown`` waits for their request)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Duplicates: they keep each listening socket open, and its queue intact, after the servers close.
        listeners = [
            socket.socket(fileno=os.dup(sock.fileno())) for server in self.servers for sock in server.sockets or ()
        ]
        refusing = [refuse_new_handshakes(listener) for listener in listeners]
        if refusing and all(refusing):
            await asyncio.sleep(HANDSHAKE_GRACE_SECONDS)  # meanwhile the servers accept and serve as usual
        queued = self._stop_listening(listeners)
        loop = asyncio.get_running_loop()
        make_protocol = cast("Callable[..., asyncio.Protocol]", self.config.http_protocol_class)
        protocol = partial(
            make_protocol,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        for connection in queued:
            with contextlib.suppress(OSError):  # the client already gave up: nothing to answer
                await loop.connect_accepted_socket(protocol, connection)
        await super().shutdown(sockets)  # closes nothing more; asks every connection, these included, to finish

    def _stop_listening(self, listeners: list[socket.socket]) -> list[socket.socket]:
        """Close the servers, accept what the kernel has queued, close the listening sockets; from then on
        connections are refused. No ``await`` in here: without ``refuse_new_handshakes``, a connection can
        still be lost in the microseconds between the last ``accept`` and the ``close``, no more."""
        for server in self.servers:
            server.close()
        queued: list[socket.socket] = []
        for listener in listeners:
            listener.setblocking(False)
            with listener:
                while True:
                    try:
                        connection, _ = listener.accept()
                    except OSError:  # BlockingIOError: the queue is empty
                        break
                    connection.setblocking(False)
                    if connection.family in (socket.AF_INET, socket.AF_INET6):  # as the servers' own accepts do
                        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    queued.append(connection)
        return queued


class DrainingProcess(Process):
    """A ``--workers`` worker whose server is a ``DrainingServer``: at its SIGTERM it answers what the shared
    socket has queued (a worker still starting, or busy, when the signal came would otherwise close the socket on
    connections it never accepted: the last worker's close reset them)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


class DrainingMultiprocess(Multiprocess):
    """uvicorn's supervisor for ``--workers``, whose workers are ``DrainingProcess``es. Before it signals them:
    new handshakes on the shared socket are refused, the workers (still serving) take those under way, and the
    parent closes its copy, so that the socket closes with the last worker's and a connection then is refused,
    not queued and later reset.

    A SIGTERM sent to every process of the group at once (systemd's default ``KillMode=control-group``) reaches
    the workers before the parent has refused new handshakes: a connection may then be refused that could have
    been answered; send it to the parent (``KillMode=mixed``, as Docker and Kubernetes do)."""

    def terminate_all(self) -> None:
        refusing = [refuse_new_handshakes(sock) for sock in self.sockets]
        if refusing and all(refusing):
            time.sleep(HANDSHAKE_GRACE_SECONDS)
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def run(app: str, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, with a ``DrainingServer``, or with ``DrainingMultiprocess`` for
    ``workers`` > 1; ``reload`` is uvicorn's own (development)."""
    if options.get("reload"):
        uvicorn.run(app, **options)
        return
    config = uvicorn.Config(app, **options)
    if config.workers > 1:
        multiprocess.Process = DrainingProcess  # type: ignore[misc]  # the name uvicorn's supervisor makes workers by
        with contextlib.suppress(KeyboardInterrupt):
            DrainingMultiprocess(config, sockets=[config.bind_socket()]).run()
        return
    config.load_app()
    server = DrainingServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)

"""The server itself, as users run it (real processes, real sockets): a request head bounded in size and time
under ``llm-gateway serve``, and ``uvicorn --factory ... --root-path /gw`` serving chat."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes import FakeProvider
from tests.identity_support import ADMIN_API_KEY, create_key
from tests.integration.test_serve import START_TIMEOUT_SECONDS, base_env
from tests.services import free_port

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 1.0
SOCKET_TIMEOUT = 10.0  # no read in these tests may wait longer
Start = Callable[[list[str], dict[str, str]], str]


@pytest.fixture
def start(tmp_path: Path, openai_fake: FakeProvider) -> Iterator[Start]:
    processes: list[subprocess.Popen[bytes]] = []

    def run(command: list[str], extra: dict[str, str]) -> str:
        port = free_port()
        env = {**base_env(tmp_path), **openai_fake.env, "PORT": str(port), "HOST": "127.0.0.1", **extra}
        env["ADMIN_API_KEY"] = ADMIN_API_KEY
        log = tmp_path / f"gateway-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", *command, "--port", str(port)],
                env=env,
                cwd=tmp_path,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the gateway did not become healthy"
            time.sleep(0.1)

    yield run
    for process in processes:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def served(start: Start) -> str:
    return start(["llm_gateway", "serve"], {"REQUEST_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)})


def connect(url: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=SOCKET_TIMEOUT)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, on a connection that stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += recv_some(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += recv_some(sock)
    return head + b"\r\n\r\n" + body


def recv_some(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection mid-response"
    return chunk


def trickle_until_closed(sock: socket.socket, data: bytes) -> tuple[float, bytes]:
    """Send ``data`` a byte every 0.1 s (never all in time): how long until the server closed, and what it said."""
    started = time.monotonic()
    sock.settimeout(0.1)
    received = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


def status_and_body(answer: bytes) -> tuple[bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


SLOW_LINE = b"GET /health HTTP/1.1\r\nHost: gateway\r\n" + b"X-Padding: " + b"y" * 200  # 100 bytes take 10 s


def test_a_request_line_sent_byte_by_byte_is_cut_off_at_the_timeout(served: str) -> None:
    with connect(served) as sock:
        elapsed, answer = trickle_until_closed(sock, SLOW_LINE)
    assert HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + 1.5
    status, body = status_and_body(answer)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert body == (
        b'{"error":{"message":"The request\'s headers did not arrive in time.","type":"invalid_request_error",'
        b'"param":null,"code":"request_timeout"}}'
    )


def test_a_second_request_on_a_kept_alive_connection_gets_the_timeout_too(served: str) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b'{"status":"ok"}')
        time.sleep(HEADER_TIMEOUT + 0.3)  # idle between requests is the keep-alive timer's (5 s), not this one
        elapsed, answer = trickle_until_closed(sock, SLOW_LINE)
    assert HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + 1.5
    assert status_and_body(answer)[0] == b"HTTP/1.1 408 Request Timeout"


@pytest.mark.parametrize("second_request", [False, True])
def test_a_1_mb_header_is_431(served: str, second_request: bool) -> None:
    with connect(served) as sock:
        if second_request:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        huge = b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + b"a" * 1_000_000 + b"\r\n\r\n"
        try:
            sock.sendall(huge)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop listening once it has answered
        status, body = status_and_body(read_until_closed(sock))
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert body == (
        b'{"error":{"message":"The request\'s header fields are too large.","type":"invalid_request_error",'
        b'"param":null,"code":"request_header_fields_too_large"}}'
    )


def test_normal_requests_are_unaffected(served: str, openai_fake: FakeProvider) -> None:
    key = create_key(served, "alice")
    with httpx.Client(base_url=served, timeout=SOCKET_TIMEOUT) as http:  # one kept-alive connection
        big_but_allowed = http.get("/health", headers={"x-padding": "z" * 40_000})
        assert (big_but_allowed.status_code, big_but_allowed.json()) == (200, {"status": "ok"})
        client = openai.OpenAI(api_key=key, base_url=f"{served}/v1", http_client=http, max_retries=0)
        for turn in range(3):
            completion = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {turn}"}]
            )
            assert completion.choices[0].message.content
            time.sleep(HEADER_TIMEOUT / 2)
    assert len(openai_fake.chat_requests) == 3


def test_uvicorn_with_a_root_path_serves_chat(start: Start) -> None:
    url = start(["uvicorn", "--factory", "llm_gateway.app:create_app_from_env", "--root-path", "/gw"], {})
    key = create_key(url, "alice")  # the proxy in front strips /gw: uvicorn puts it back in scope["path"]
    with openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0, timeout=SOCKET_TIMEOUT) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert completion.choices[0].message.content
        assert "gpt-4o-mini" in [model.id for model in client.models.list().data]
    anonymous = httpx.get(f"{url}/admin/keys", timeout=SOCKET_TIMEOUT)
    assert anonymous.status_code == 401

"""The pooled HTTP/1.1 transport against raw loopback servers that answer with exact bytes.

Each server is an ``asyncio`` server whose handler reads one request head and body at a time and
writes whatever the test scripts, so framing (Content-Length, chunked, close-delimited), keep-alive,
stale connections, cuts, garbage and silence are all real socket behaviour.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from llm_gateway.errors import ProviderProtocolError, ProviderTimeout, ProviderUnreachable
from llm_gateway.http import HttpTransport, UpstreamBounds, iter_sse
from llm_gateway.providers.adapter import map_transport_errors

pytestmark = pytest.mark.integration
# Every test here runs on both loops (``pytest_asyncio_loop_factories`` in conftest.py): the gateway serves
# on uvloop, whose transports are not asyncio's classes.

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
DEFAULT_BOUNDS = UpstreamBounds()


class RawServer:
    """Counts connections and requests; ``answer`` writes the response and says whether to keep the connection."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.answer(reader, writer, body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    answer: Answer, bounds: UpstreamBounds = DEFAULT_BOUNDS
) -> AsyncIterator[tuple[RawServer, HttpTransport]]:
    raw = RawServer(answer)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(f"http://127.0.0.1:{raw.port}/v1", bounds=bounds)
    try:
        yield raw, transport
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


def head(transport: HttpTransport) -> bytes:
    return transport.request_head("/chat/completions", {"Authorization": "Bearer sk-test", "Accept": "*/*"})


async def post_and_read(transport: HttpTransport, body: bytes = b'{"a":1}', timeout: float = 2.0) -> tuple[int, bytes]:
    with map_transport_errors("openai"):
        async with transport.post(head(transport), body, timeout=timeout) as response:
            return response.status, await response.read()


async def echo_with_length(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
    writer.write(HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    return True


async def test_a_request_goes_out_as_http11_with_its_head_and_body() -> None:
    async with serving(echo_with_length) as (server, transport):
        status, body = await post_and_read(transport, b'{"model":"m"}')
    assert (status, body) == (200, b'{"model":"m"}')
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)
    assert b"Authorization: Bearer sk-test\r\n" in request
    assert request.endswith(b'Content-Length: 13\r\n\r\n{"model":"m"}')


async def test_connections_are_kept_alive_and_reused() -> None:
    async with serving(echo_with_length) as (server, transport):
        for index in range(20):
            assert await post_and_read(transport, b"%d" % index) == (200, b"%d" % index)
    assert server.connections == 1 and len(server.requests) == 20


async def test_concurrent_requests_each_get_a_connection_without_a_cap() -> None:
    async def slow_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        await asyncio.sleep(0.05)
        return await echo_with_length(reader, writer, body)

    async with serving(slow_echo) as (server, transport):
        answers = await asyncio.gather(*(post_and_read(transport, b"%d" % i) for i in range(100)))
        assert answers == [(200, b"%d" % i) for i in range(100)]
        assert server.connections == 100
        await asyncio.gather(*(post_and_read(transport) for _ in range(100)))  # the pool serves them all again
        assert server.connections == 100


async def test_a_chunked_body_is_reassembled() -> None:
    async def chunked(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"choices":', b"[]", b"}"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        return True

    async with serving(chunked) as (server, transport):
        assert await post_and_read(transport) == (200, b'{"choices":[]}')
        assert await post_and_read(transport) == (200, b'{"choices":[]}')
    assert server.connections == 1


async def test_a_body_delimited_by_close_ends_with_the_connection() -> None:
    async def close_delimited(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(HEAD + b"Connection: close\r\n\r\n" + b'{"ok":true}')
        await writer.drain()
        return False

    async with serving(close_delimited) as (server, transport):
        assert await post_and_read(transport) == (200, b'{"ok":true}')
        assert await post_and_read(transport) == (200, b'{"ok":true}')
    assert server.connections == 2  # "Connection: close": never reused


async def test_a_gzipped_body_is_decompressed() -> None:
    async def gzipped(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        packed = gzip.compress(b'{"text":"' + b"x" * 5000 + b'"}')
        writer.write(HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed))
        return True

    async with serving(gzipped) as (_, transport):
        status, body = await post_and_read(transport)
    assert status == 200 and body == b'{"text":"' + b"x" * 5000 + b'"}'


async def test_a_pooled_connection_closed_by_the_upstream_is_replaced_without_an_error() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        await echo_with_length(reader, writer, body)
        return False  # the upstream closes every connection after one answer, without saying so

    async with serving(answer_once) as (server, transport):
        for index in range(5):
            await asyncio.sleep(0.02)  # the close reaches the idle connection first
            assert await post_and_read(transport, b"%d" % index) == (200, b"%d" % index)
    assert server.connections == 5


async def test_a_request_written_on_a_pooled_connection_is_never_sent_twice() -> None:
    """The upstream reads the request and closes without a byte of answer: it may have processed (and
    billed) it, so the transport fails (retryable, for the router to try the next deployment) and does
    not send the same POST again on a new connection."""

    async def answer_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        if body == b"first":
            return await echo_with_length(reader, writer, body)
        return False  # read the request, drop the connection without answering

    async with serving(answer_then_drop) as (server, transport):
        assert await post_and_read(transport, b"first") == (200, b"first")
        with pytest.raises(ProviderUnreachable, match=r"^openai closed the connection before answering$") as caught:
            await post_and_read(transport, b"second")
        assert caught.value.retryable
        assert [request.rsplit(b"\r\n\r\n", 1)[1] for request in server.requests] == [b"first", b"second"]
        assert server.connections == 1
        assert transport.open_connections == 0


async def test_a_connection_cut_mid_body_is_unreachable_not_a_short_answer() -> None:
    async def cut(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"choices":')
        await writer.drain()
        return False

    async with serving(cut) as (_, transport):
        with pytest.raises(ProviderUnreachable, match="mid-answer"):
            await post_and_read(transport)


@pytest.mark.parametrize(
    "garbage",
    [b"<html>not http</html>\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n"],
)
async def test_bytes_that_are_not_http_are_a_protocol_error(garbage: bytes) -> None:
    async def send_garbage(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(garbage)
        await writer.drain()
        await asyncio.sleep(0.5)
        return False

    async with serving(send_garbage) as (_, transport):
        with pytest.raises(ProviderProtocolError):
            await post_and_read(transport)


async def test_silence_before_the_answer_times_out() -> None:
    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as (_, transport):
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProviderTimeout):
            await post_and_read(transport, timeout=0.3)
        assert 0.29 <= asyncio.get_running_loop().time() - started < 1.0  # uvloop's clock is in ms


async def test_the_timeout_bounds_each_gap_not_the_whole_body() -> None:
    """Bytes every 0.1 s for 0.6 s with a 0.3 s timeout: answered; then a 0.6 s gap: timed out."""

    async def trickle(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        gap = 0.6 if body == b"gap" else 0.1
        writer.write(HEAD + b"Content-Length: 6\r\n\r\n")
        for byte in b"abcdef":
            await writer.drain()
            await asyncio.sleep(gap)
            writer.write(bytes([byte]))
        await writer.drain()
        return True

    async with serving(trickle) as (_, transport):
        assert await post_and_read(transport, b"steady", timeout=0.3) == (200, b"abcdef")
        with pytest.raises(ProviderTimeout):
            await post_and_read(transport, b"gap", timeout=0.3)


async def test_an_unreachable_upstream_is_unreachable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    transport = HttpTransport(f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderUnreachable, match="could not be reached"):
        await post_and_read(transport)


async def test_read_prefix_returns_the_start_and_drops_the_connection() -> None:
    async with serving(echo_with_length) as (server, transport):
        with map_transport_errors("openai"):
            async with transport.post(head(transport), b"x" * 1000, timeout=2) as response:
                assert await response.read_prefix(100) == b"x" * 100
        assert await post_and_read(transport, b"next") == (200, b"next")
    assert server.connections == 2


async def test_sse_events_are_parsed_however_the_network_cuts_the_bytes() -> None:
    stream = (
        b': a comment\r\n\r\nevent: message_start\r\ndata: {"a":1}\r\n\r\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    )

    async def sse(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        size = int(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(stream), size):
            part = stream[start : start + size]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with serving(sse) as (_, transport):
        for size in (1, 2, 3, 7, 1000):
            async with transport.post(head(transport), b"%d" % size, timeout=2) as response:
                events = [(event.event, event.data) async for event in iter_sse(response, max_line_bytes=64)]
            assert events == [("message_start", b'{"a":1}'), ("message", b'{"b":\n2}'), ("message", b"[DONE]")]


def self_signed_for_loopback(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llm-gateway test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_https_upstreams_are_reached_over_verified_tls(tmp_path: Path) -> None:
    """Every real provider is https: the answer arrives over TLS, the connection is reused, and a certificate
    the client does not trust is refused (unreachable), never used."""
    cert, key = self_signed_for_loopback(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    raw = RawServer(echo_with_length)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    transport = HttpTransport(f"https://127.0.0.1:{port}/v1", ssl_context=trusting)
    untrusting = HttpTransport(f"https://127.0.0.1:{port}/v1")  # the system's trust store
    try:
        for index in range(3):
            assert await post_and_read(transport, b"%d" % index) == (200, b"%d" % index)
        assert raw.connections == 1
        with pytest.raises(ProviderUnreachable):
            await post_and_read(untrusting)
    finally:
        await transport.aclose()
        await untrusting.aclose()
        server.close()
        await server.wait_closed()


async def test_a_large_body_read_slowly_arrives_whole() -> None:
    """Past the high-water mark the transport stops reading the socket until the reader catches up."""
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def big(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(payload), 65536):
            part = payload[start : start + 65536]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with serving(big) as (server, transport):
        for _ in range(2):
            received = bytearray()
            async with transport.post(head(transport), b"{}", timeout=5) as response:
                async for chunk in response.iter_chunks():
                    received += chunk
                    await asyncio.sleep(0.001)  # a slow client downstream
            assert bytes(received) == payload
    assert server.connections == 1  # resumed, read whole, and reused


async def test_a_pooled_connection_found_closing_is_replaced() -> None:
    """Its transport is closing but its end has not been seen yet: the request goes out on a new one."""
    async with serving(echo_with_length) as (server, transport):
        assert await post_and_read(transport, b"one") == (200, b"one")
        idle = transport._idle[-1]
        assert idle._transport is not None
        idle._transport.close()  # as when the loop closes it before connection_lost has run
        assert await post_and_read(transport, b"two") == (200, b"two")
    assert server.connections == 2


# -- Bounds: a body arrives whole up to the limit, and is refused as soon as it passes it ------------------


@pytest.mark.parametrize("size", [650_000, 10_000_000])
async def test_a_large_body_read_whole_arrives_at_once(size: int) -> None:
    """Bodies past the stream high-water mark (256 KiB) used to pause the socket and never resume."""
    payload = b'{"text":"' + b"x" * (size - 11) + b'"}'

    async def big(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(HEAD + b"Content-Length: %d\r\n\r\n" % len(payload))
        for start in range(0, len(payload), 65536):
            writer.write(payload[start : start + 65536])
            await writer.drain()
        return True

    async with serving(big) as (server, transport):
        for _ in range(2):
            async with asyncio.timeout(10):
                assert await post_and_read(transport) == (200, payload)
        assert server.connections == 1 and transport.open_connections == 1


def flood(announce: bool, total: int = 1 << 30) -> Answer:
    """Headers, then up to ``total`` bytes as fast as the client takes them (Content-Length or chunked)."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        framing = b"Content-Length: %d\r\n" % total if announce else b"Transfer-Encoding: chunked\r\n"
        writer.write(HEAD + framing + b"\r\n")
        piece = b"x" * 65536
        for _ in range(total // len(piece)):
            writer.write(piece if announce else b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        return False

    return answer


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_refused_at_once(announce: bool) -> None:
    bounds = UpstreamBounds(max_response_bytes=1 << 20)
    async with serving(flood(announce), bounds) as (_, transport):
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProviderProtocolError, match=r"^openai sent too large an answer$"):
            await post_and_read(transport, timeout=30)
        assert asyncio.get_running_loop().time() - started < 1.0
        assert transport.open_connections == 0


async def test_a_stream_over_the_limit_ends_with_an_error_after_the_bytes_within_it() -> None:
    bounds = UpstreamBounds(max_response_bytes=1 << 20)
    async with serving(flood(announce=False), bounds) as (_, transport):
        received = 0
        with (
            pytest.raises(ProviderProtocolError, match=r"^openai sent too large an answer$"),
            map_transport_errors("openai"),
        ):
            async with transport.post(head(transport), b"{}", timeout=5) as response:
                async for chunk in response.iter_chunks():
                    received += len(chunk)
        assert received <= 1 << 20
        assert transport.open_connections == 0


async def test_a_corrupt_gzip_body_is_a_protocol_error_not_a_cut() -> None:
    packed = gzip.compress(b'{"text":"' + b"x" * 5000 + b'"}')

    async def corrupt(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        broken = packed[:20] + bytes(b ^ 0xFF for b in packed[20:40]) + packed[40:]
        writer.write(HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(broken), broken))
        return True

    async def truncated(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        short = packed[: len(packed) // 2]
        writer.write(HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(short), short))
        return True

    for answer in (corrupt, truncated):
        async with serving(answer) as (_, transport):
            with pytest.raises(ProviderProtocolError, match=r"^openai sent an invalid HTTP response$"):
                await post_and_read(transport)
            assert transport.open_connections == 0


# -- Pool: no leak on timeout or cancellation; idle connections pruned and capped -------------------------


async def test_pooled_connections_are_not_leaked_by_timeouts_or_cancellations() -> None:
    async def slow_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        if body == b"slow":
            await asyncio.sleep(5)
        return await echo_with_length(reader, writer, body)

    async with serving(slow_second) as (server, transport):
        await asyncio.gather(*(post_and_read(transport, b"warm") for _ in range(4)))  # 4 pooled connections
        assert (transport.open_connections, transport.idle_connections) == (4, 4)
        with pytest.raises(ProviderTimeout):
            await post_and_read(transport, b"slow", timeout=0.2)  # on a pooled connection
        assert (transport.open_connections, transport.idle_connections) == (3, 3)
        tasks = [asyncio.create_task(post_and_read(transport, b"slow", timeout=30)) for _ in range(5)]
        await asyncio.sleep(0.2)
        assert transport.open_connections == 5  # 3 pooled + 2 new, all waiting
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)
        assert (transport.open_connections, transport.idle_connections) == (0, 0)
        async with asyncio.timeout(2):  # the server sees every one of them closed
            while server.connections != 6 or len(server.requests) != 10:
                await asyncio.sleep(0.01)


async def test_a_body_cancelled_mid_read_closes_its_connection() -> None:
    async def trickle(_: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(HEAD + b"Content-Length: 100\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)
        return False

    async with serving(trickle) as (_, transport):
        task = asyncio.create_task(post_and_read(transport, timeout=30))
        await asyncio.sleep(0.2)
        assert transport.open_connections == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert transport.open_connections == 0


async def test_idle_connections_are_closed_after_idle_seconds() -> None:
    closed = asyncio.Event()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        await echo_with_length(reader, writer, body)
        return True

    async def watch_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.handle(reader, writer)
        closed.set()

    raw = RawServer(keep)
    server = await asyncio.start_server(watch_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(f"http://127.0.0.1:{port}/v1", bounds=UpstreamBounds(idle_seconds=0.3))
    try:
        started = asyncio.get_running_loop().time()
        assert await post_and_read(transport) == (200, b'{"a":1}')
        assert transport.idle_connections == 1
        async with asyncio.timeout(2):
            await closed.wait()  # no further request: the pool's own timer closed it
        assert 0.25 <= asyncio.get_running_loop().time() - started < 1.5
        assert (transport.open_connections, transport.idle_connections) == (0, 0)
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


async def test_at_most_max_idle_connections_are_kept() -> None:
    async def slow_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
        await asyncio.sleep(0.05)
        return await echo_with_length(reader, writer, body)

    async with serving(slow_echo, UpstreamBounds(max_idle_connections=2)) as (server, transport):
        answers = await asyncio.gather(*(post_and_read(transport, b"%d" % i) for i in range(6)))
        assert answers == [(200, b"%d" % i) for i in range(6)]
        assert server.connections == 6
        assert (transport.open_connections, transport.idle_connections) == (2, 2)
        await asyncio.gather(*(post_and_read(transport) for _ in range(2)))
        assert server.connections == 6  # the two kept were reused

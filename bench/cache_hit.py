"""How long a response-cache hit through the gateway takes, next to a direct call to the fast fake upstream.

Starts ``bench/upstream.py`` and ``python -m llm_gateway serve`` (anonymous callers with limits too high to
refuse, cache on: in process, or Redis with ``--redis-url`` / ``--redis-server``), then times N sequential
requests on one keep-alive connection each way, interleaved in rounds so machine noise hits both alike:

  direct   the same chat request sent straight to the upstream
  hit      the gateway answering from its cache (every answer checked: ``x-gateway-cache: hit``)
  miss     the gateway with a new body each time (cache lookup + upstream + store), for scale

The client is a raw socket with the request bytes built once, so its own cost (a few microseconds) is the
same for every row. Everything listens on 127.0.0.1; the children are stopped in a ``finally``.

    python bench/cache_hit.py [-n 2000] [--rounds 5] [--redis-server | --redis-url URL] [--json] [--normal-priority]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
IO_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own process group, stopped (SIGTERM, then SIGKILL) however the block ends."""
    popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield popen
    finally:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)
        if popen.stdout is not None:
            popen.stdout.close()


def read_ready(popen: subprocess.Popen[bytes]) -> int:
    """The port from the ``READY <port>`` line that bench/upstream.py prints once listening."""
    assert popen.stdout is not None
    os.set_blocking(popen.stdout.fileno(), False)
    deadline, buffer = time.monotonic() + START_TIMEOUT, b""
    while time.monotonic() < deadline and popen.poll() is None:
        buffer += popen.stdout.read() or b""
        for line in buffer.splitlines():
            if line.startswith(b"READY "):
                return int(line.split()[1])
        time.sleep(0.02)
    raise RuntimeError(f"bench/upstream.py did not print READY (exit code {popen.poll()})")


class Connection:
    """One keep-alive HTTP/1.1 connection: send prepared bytes, read one Content-Length answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self) -> None:
        self.sock.close()


def wait_healthy(port: int, popen: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and popen.poll() is None:
        with contextlib.suppress(OSError):
            connection = Connection(port)
            try:
                if connection.exchange(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())[0] == 200:
                    return
            finally:
                connection.close()
        time.sleep(0.05)
    raise RuntimeError(f"the gateway did not become healthy (exit code {popen.poll()})")


def chat_request(content: str, *, bearer: str | None = None) -> bytes:
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "temperature": 0},
        separators=(",", ":"),
    ).encode()
    authorization = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\n{authorization}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


Check = Callable[[int, dict[str, str]], None]


def timed(connection: Connection, requests: Iterator[bytes], count: int, check: Check) -> list[float]:
    samples = []
    for _ in range(count):
        request = next(requests)
        started = time.perf_counter()
        status, headers, _ = connection.exchange(request)
        samples.append(time.perf_counter() - started)
        check(status, headers)
    return samples


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process: steadier than wall time on a shared machine (a CPU-bound server's rate is 1/it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def expect(cache: str | None) -> Check:
    def check(status: int, headers: dict[str, str]) -> None:
        if status != 200 or (cache is not None and headers.get("x-gateway-cache") != cache):
            raise RuntimeError(f"unexpected answer: {status}, x-gateway-cache={headers.get('x-gateway-cache')}")

    return check


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 0.50) * 1000,
        "p90_ms": percentile(samples, 0.90) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


def gateway_env(upstream_port: int, database_dir: str, redis_url: str | None, port: int) -> dict[str, str]:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("REDIS_", "DATABASE_"))},
        "HOST": HOST,
        "PORT": str(port),
        "GATEWAY_CONFIG": "",
        "OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
        "OPENAI_API_KEY": "bench",
        "ANTHROPIC_API_KEY": "",
        "GROQ_API_KEY": "",
        "DATABASE_URL": f"sqlite:///{database_dir}/bench.db",
        "LOG_LEVEL": "WARNING",
        # checked on every request, never refusing
        "ANON_RATE_LIMIT_PER_MINUTE": "100000000",
        "ANON_MONTHLY_TOKEN_BUDGET": "1000000000000",
        "CACHE_TTL_SECONDS": "3600",
        "CACHE_ENABLED": "true",
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
        env["REDIS_PREFIX"] = f"bench-cache-hit-{os.getpid()}:"
    return env


def run(args: argparse.Namespace, redis_url: str | None) -> dict[str, object]:
    python = sys.executable
    with (
        child([python, str(ROOT / "bench" / "upstream.py"), "--port", "0"]) as upstream,
        tempfile.TemporaryDirectory(prefix="bench-cache-hit-") as database_dir,
    ):
        upstream_port = read_ready(upstream)
        port = free_port()
        env = gateway_env(upstream_port, database_dir, redis_url, port)
        # as bench/run.py does: the gateway at a higher priority when we may, so other load disturbs it less
        nice = ["nice", "-n", "-10"] if args.nice and os.geteuid() == 0 and shutil.which("nice") else []
        with child([*nice, python, "-m", "llm_gateway", "serve"], env) as gateway:
            wait_healthy(port, gateway)
            direct, through = Connection(upstream_port), Connection(port)
            try:
                return measure(args, direct, through, gateway.pid)
            finally:
                direct.close()
                through.close()


def measure(args: argparse.Namespace, direct: Connection, through: Connection, gateway_pid: int) -> dict[str, object]:
    # the gateway's caller is anonymous; the upstream gets the key the gateway would send it
    same_direct = chat_request("What is a cache?", bearer="bench")
    same_gateway = chat_request("What is a cache?")
    fresh = (chat_request(f"Question number {i}?") for i in range(10**9))

    def repeat(request: bytes) -> Iterator[bytes]:
        while True:
            yield request

    timed(through, iter([same_gateway]), 1, expect("miss"))  # stores the entry the hits read
    time.sleep(0.1)  # a Redis write happens after the answer
    timed(direct, repeat(same_direct), args.warmup, expect(None))
    timed(through, repeat(same_gateway), args.warmup, expect("hit"))
    timed(through, fresh, min(args.warmup, 200), expect("miss"))

    rows: dict[str, list[float]] = {"direct": [], "hit": [], "miss": []}
    cpu = {"hit": 0.0, "miss": 0.0}
    per_round = max(1, args.requests // args.rounds)
    for _ in range(args.rounds):
        rows["direct"] += timed(direct, repeat(same_direct), per_round, expect(None))
        for name, requests in (("hit", repeat(same_gateway)), ("miss", fresh)):
            before = cpu_seconds(gateway_pid)
            rows[name] += timed(through, requests, per_round, expect(name))
            cpu[name] += cpu_seconds(gateway_pid) - before
    results: dict[str, object] = {}
    for name, samples in rows.items():
        results[name] = summary(samples) | {"requests": len(samples)}
        if name in cpu:
            results[name] |= {"gateway_cpu_us_per_request": cpu[name] / len(samples) * 1e6}
    return results


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--redis-server needs redis-server on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    with child(argv) as popen:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
                break
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://{HOST}:{port}/0"


def print_table(results: dict[str, object], backend: str) -> None:
    print(f"cache hit vs direct call, {backend} cache, sequential requests on one keep-alive connection")
    print(f"{'row':<8}{'requests':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'gw CPU us/req':>15}")
    for name, row in results.items():
        assert isinstance(row, dict)
        cpu = row.get("gateway_cpu_us_per_request")
        print(
            f"{name:<8}{row['requests']:>10}{row['p50_ms']:>10.3f}{row['p90_ms']:>10.3f}"
            f"{row['p99_ms']:>10.3f}{row['mean_ms']:>10.3f}{'-' if cpu is None else f'{cpu:,.0f}':>15}"
        )
    hit, direct = results["hit"], results["direct"]
    assert isinstance(hit, dict) and isinstance(direct, dict)
    print(
        f"hit - direct: p50 {hit['p50_ms'] - direct['p50_ms']:+.3f} ms, p99 {hit['p99_ms'] - direct['p99_ms']:+.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--requests", type=int, default=2000, help="measured requests per row")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the requests are split into")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests per row first")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--redis-url", help="use this (loopback) Redis for the cache")
    where.add_argument("--redis-server", action="store_true", help="start a throw-away redis-server for the cache")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--normal-priority", dest="nice", action="store_false", help="do not run the gateway at nice -10 (as root)"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--requests and --rounds must be >= 1, --warmup >= 0")

    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url
        if args.redis_server:
            redis_url = stack.enter_context(redis_server())
        results = run(args, redis_url)
    backend = "Redis" if redis_url else "in-process"
    if args.json:
        print(json.dumps({"backend": backend, **results}, indent=2))
    else:
        print_table(results, backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The gateway's own CPU per request, without a server or a client socket in the measurement.

Why: wrk's numbers include uvicorn and the kernel on both sides; to price a change to the
pipeline itself, this calls the ASGI app directly (as uvicorn would, one request at a time,
on uvloop) against the fast fake upstream (bench/upstream.py, a child process), and reports
the process CPU per request. ``--profile`` prints cProfile's top functions instead of timing
(cProfile inflates everything roughly threefold; read it for ranking, not for microseconds).

    python bench/inprocess.py [--requests 3000] [--redis-url redis://127.0.0.1:6379/0] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from llm_gateway.app import create_app
from llm_gateway.settings import load_settings

HERE = Path(__file__).resolve().parent
NEVER_REFUSE = {
    "RATE_LIMIT_PER_MINUTE": "1000000000",
    "ANON_RATE_LIMIT_PER_MINUTE": "1000000000",
    "DEFAULT_MONTHLY_TOKEN_BUDGET": "1000000000000000",
    "ANON_MONTHLY_TOKEN_BUDGET": "1000000000000000",
}
BODY = orjson.dumps(
    {
        "model": "bench",
        "messages": [{"role": "user", "content": "Say hello to the benchmark, briefly."}],
        "max_tokens": 32,
    }
)
CONFIG = {"providers": {"openai": {"type": "openai"}}, "models": {"bench": [{"provider": "openai", "model": "bench"}]}}
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/chat/completions",
    "raw_path": b"/v1/chat/completions",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(BODY)),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 5000),
}


async def one_request(app: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({**SCOPE, "state": {}}, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"the gateway answered {sent[0]['status']}: {sent[-1].get('body', b'')[:300]!r}")


async def measure(env: dict[str, str], requests: int, profile: bool) -> None:
    app = create_app(load_settings(env))
    async with app.router.lifespan_context(app):
        for _ in range(300):  # warm: tokenizers built, connections pooled, ledger table touched
            await one_request(app)
        profiler = cProfile.Profile() if profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        for _ in range(requests):
            await one_request(app)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - started
    print(f"{cpu / requests * 1e6:.0f} us of CPU per request ({requests} sequential, profile={profile})")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis-url", help="limits and cache on this Redis (loopback), cache on")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "upstream.py"), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert upstream.stdout is not None
        line = upstream.stdout.readline().decode()  # "READY <port>"
        if not line.startswith("READY "):
            raise RuntimeError(f"bench/upstream.py did not start: {line!r}")
        port = int(line.split()[1])
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "gateway.yaml"
            config.write_bytes(orjson.dumps(CONFIG))  # JSON is YAML
            env = {
                "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                "OPENAI_API_KEY": "bench",
                "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
                "GATEWAY_CONFIG": str(config),
                "LOG_LEVEL": "WARNING",
                "CACHE_TTL_SECONDS": "300" if args.redis_url else "0",
                **NEVER_REFUSE,
            }
            if args.redis_url:
                env.update(REDIS_URL=args.redis_url, REDIS_PREFIX=f"bench-inprocess-{port}:")
            uvloop.run(measure(env, args.requests, args.profile))
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

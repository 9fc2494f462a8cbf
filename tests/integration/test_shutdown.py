"""SIGTERM to ``llm-gateway serve`` with 20 streams in flight: every stream finishes and is recorded.

A real process (as under systemd or Kubernetes), SQLite in a temp dir, a fake OpenAI whose streams
take about two seconds, and a fake Helicone. The signal arrives once every stream has sent its
first chunk. Protections: uvicorn's graceful shutdown (stop accepting, let responses in flight end,
bounded by ``timeout_graceful_shutdown``), then the lifespan's ordered close: ``pipeline.drain``
(stream settlements), the usage ledger's flush, the Helicone queue's flush.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeProvider, Reply
from tests.fakes.collectors import FakeHelicone
from tests.services import free_port

pytestmark = pytest.mark.integration

STREAMS = 20
WORDS = [f"w{index}" for index in range(10)]
CHUNK_DELAY = 0.2  # ten chunks: about 2 s per stream
START_TIMEOUT_SECONDS = 60.0  # a loaded CI machine can take a while to import and build the tokenizers
EXIT_TIMEOUT_SECONDS = 15.0


@pytest.fixture
def helicone() -> Iterator[FakeHelicone]:
    with FakeHelicone() as fake:
        yield fake


@pytest.fixture
def served(
    tmp_path: Path, openai_fake: FakeProvider, helicone: FakeHelicone
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    openai_fake.set_default(Reply(" ".join(WORDS), chunks=len(WORDS), chunk_delay=CHUNK_DELAY))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_URL"))}
    env.pop("GATEWAY_CONFIG", None)
    env |= {
        **openai_fake.env,
        "DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "ANON_RATE_LIMIT_PER_MINUTE": "1000",
        "ANON_MONTHLY_TOKEN_BUDGET": "100000000",  # 20 concurrent reservations of 4096 tokens each
        "HELICONE_API_KEY": helicone.api_key,
        "HELICONE_BASE_URL": helicone.url,
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)


async def one_stream(
    client: httpx.AsyncClient, index: int, started: asyncio.Event, counter: list[int]
) -> tuple[int, str]:
    """Stream one answer: (status, SSE text). Sets ``started`` once every stream has its first chunk (or failed)."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"stream {index}"}], "stream": True}
    text = ""
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for piece in response.aiter_text():
            text += piece
            if len(text) == len(piece):  # the first piece
                counter.append(index)
                if len(counter) == STREAMS:
                    started.set()
    return response.status_code, text


def content_of(sse: str) -> tuple[str, list[str]]:
    """The streamed text and the raw ``data:`` payloads."""
    payloads = [line[len("data: ") :] for line in sse.splitlines() if line.startswith("data: ")]
    text = ""
    for payload in payloads:
        if payload != "[DONE]":
            for choice in json.loads(payload).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    return text, payloads


async def refused(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as probe:
        try:
            await probe.get(f"{url}/health")
        except httpx.ConnectError:
            return True
    return False


async def test_sigterm_lets_every_stream_in_flight_finish_and_records_each(
    served: tuple[subprocess.Popen[bytes], str], tmp_path: Path, helicone: FakeHelicone
) -> None:
    process, url = served
    started, counter = asyncio.Event(), []
    limits = httpx.Limits(max_connections=STREAMS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        streams = [asyncio.create_task(one_stream(client, index, started, counter)) for index in range(STREAMS)]
        await asyncio.wait_for(started.wait(), timeout=10)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.3)
        assert await refused(url), "a new connection was accepted after SIGTERM"
        results = await asyncio.wait_for(asyncio.gather(*streams), timeout=EXIT_TIMEOUT_SECONDS)
    for status, sse in results:
        assert status == 200, sse
        text, payloads = content_of(sse)
        assert text == " ".join(WORDS)  # the whole answer, not a cut one
        assert payloads[-1] == "[DONE]"
        assert not any('"error"' in payload for payload in payloads)
    await asyncio.to_thread(process.wait, EXIT_TIMEOUT_SECONDS)
    assert time.monotonic() - signalled < EXIT_TIMEOUT_SECONDS
    # uvicorn re-raises the signal once its shutdown is complete: the conventional "ended by SIGTERM".
    assert process.returncode in (0, -signal.SIGTERM)
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log and "unwritten" not in log, log

    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, completion_tokens FROM usage_ledger").fetchall()
    db.close()
    assert len(rows) == STREAMS
    assert all(status == 200 and completion_tokens > 0 for status, completion_tokens in rows)
    assert len(helicone.logs) == STREAMS  # the Helicone queue was flushed before exit, not dropped

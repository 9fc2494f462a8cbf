"""``llm-gateway serve --workers 2``: ``/metrics`` on any worker counts the requests every worker served
(Prometheus multiprocess mode, set up by the CLI), whether or not ``PROMETHEUS_MULTIPROC_DIR`` is given.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeProvider
from tests.identity_support import ADMIN_API_KEY, create_key
from tests.services import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 60.0  # two workers importing at once on a small, busy machine
REQUESTS = 24


def requests_served(url: str) -> float:
    """``llm_gateway_requests_total`` as one worker exposes it, over a fresh connection."""
    text = httpx.get(f"{url}/metrics", headers={"connection": "close"}, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llm_gateway_requests_total"
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the gateway did not become healthy"
        time.sleep(0.1)


@pytest.mark.parametrize("configured", [True, False], ids=["PROMETHEUS_MULTIPROC_DIR", "private-directory"])
def test_metrics_are_summed_over_the_workers(
    tmp_path: Path, redis_url: str, fakes: dict[str, FakeProvider], configured: bool
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "GATEWAY_CONFIG": "",
            "DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db",
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"obs-workers-{uuid.uuid4().hex[:8]}:",
            "ADMIN_API_KEY": ADMIN_API_KEY,
            "LOG_LEVEL": "WARNING",
            "TMPDIR": str(tmp_path),  # where a private directory would be made
        }
    )
    for fake in fakes.values():
        env.update(fake.env)
    metrics_dir = tmp_path / "prometheus"
    if configured:
        metrics_dir.mkdir()
        (metrics_dir / "counter_424242.db").write_bytes(b"left over by a previous run")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve", "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        key = create_key(url, "walt")
        headers = {"authorization": f"Bearer {key}", "cache-control": "no-store", "connection": "close"}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

        def chat(_: int) -> int:
            return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=20).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent new connections reach both workers
            assert list(pool.map(chat, range(REQUESTS))) == [200] * REQUESTS
        scrapes = [requests_served(url) for _ in range(8)]  # each scrape may land on either worker
        assert scrapes == [REQUESTS] * 8, log.read_text()
        if configured:
            assert not (metrics_dir / "counter_424242.db").exists()  # emptied before the workers started
            pids = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
            assert len(pids) == 2, pids  # both workers wrote, so the sum above really is a sum
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not list(tmp_path.glob("llm-gateway-metrics-*"))  # a private directory is removed at exit

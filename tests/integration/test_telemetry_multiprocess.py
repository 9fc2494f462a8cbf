"""Prometheus multiprocess mode: two worker processes record, any process's exposition shows the sum."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_gateway.telemetry.metrics import clear_multiproc_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys
from llm_gateway.telemetry import RequestRecord, Telemetry, TelemetrySettings
telemetry = Telemetry.create(TelemetrySettings(prometheus_multiproc_dir=sys.argv[1]), {})
for _ in range(int(sys.argv[2])):
    record = RequestRecord.begin("r", "/v1/chat/completions", "gpt-4o-mini", provider="openai", prompt_tokens=3)
    telemetry.record(record)
if len(sys.argv) > 3:
    sys.stdout.write(telemetry.metrics.exposition()[0].decode())
"""


def run(directory: Path, count: int, *, expose: bool = False) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, "-c", WORKER, str(directory), str(count)] + (["expose"] if expose else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_workers_are_summed(tmp_path: Path) -> None:
    directory = tmp_path / "prom"
    clear_multiproc_dir(str(directory))
    run(directory, 3)
    run(directory, 4)
    text = run(directory, 0, expose=True)
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("model", "gpt-4o-mini"), ("provider", "openai"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert values[("llm_gateway_requests_total", labels)] == 7
    tokens = (("direction", "input"), ("model", "gpt-4o-mini"), ("provider", "openai"))
    assert values[("llm_gateway_tokens_total", tokens)] == 21

    clear_multiproc_dir(str(directory))
    assert list(directory.iterdir()) == []

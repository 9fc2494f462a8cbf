"""LiteLLM proxy as an optional point of comparison, in a throw-away virtual environment.

Why apart from the gateway's own environment: LiteLLM proxy pulls in hundreds of packages
that must never become a dependency of the gateway, nor change the versions the gateway is
measured with. It lives in its own venv under /tmp (kept between runs, since installing it
takes minutes), and is configured with the same fake upstream as the gateway: one model
``bench`` -> ``openai/bench`` at the upstream's ``api_base``, and a master key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harness import START_TIMEOUT_S, Baseline, Bench
from processes import base_env, free_port, group_rss_kib, log, wait_healthy
from report import Row, compare_row, info_row, skipped_row

VENV = Path("/tmp/llm-gateway-bench-litellm")
# 1.107.0 was a compromised release (malicious code published under LiteLLM's name); never install it.
REQUIREMENT = "litellm[proxy]!=1.107.0"
MASTER_KEY = "sk-bench-master-0000"
INSTALL_TIMEOUT_S = 1200
HEALTH_PATH = "/health/liveliness"
LITELLM_TIMES_TARGET = 50.0


class Unavailable(Exception):
    """LiteLLM proxy cannot be installed or started here; the message says why."""


def ensure_installed() -> tuple[Path, str]:
    """(the ``litellm`` executable, its version), creating the venv and installing it on first use."""
    exe = VENV / "bin" / "litellm"
    python = VENV / "bin" / "python"
    if not exe.exists():
        log(f"litellm: creating {VENV} and installing {REQUIREMENT!r} (a few minutes, once)")
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REQUIREMENT],
        ]
        for argv in steps:
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired as exc:
                raise Unavailable(f"`{' '.join(argv[:4])}` timed out after {INSTALL_TIMEOUT_S} s") from exc
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise Unavailable(f"`{' '.join(argv[:4])}…` failed: {tail}")
        if not exe.exists():
            raise Unavailable(f"pip installed {REQUIREMENT!r} but no {exe}")
    proc = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise Unavailable(f"litellm is installed in {VENV} but does not import: {proc.stderr.strip()[-300:]}")
    return exe, proc.stdout.strip()


def write_config(path: Path, upstream_port: int) -> Path:
    """The same fake upstream as the gateway's ``bench`` group, behind a master key."""
    path.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: bench\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
    )
    return path


def command(exe: Path, config: Path, port: int) -> list[str]:
    return [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]


def environment() -> dict[str, str]:
    """No network at start-up (the bundled model-cost map), quiet logs, no database, no telemetry."""
    env = base_env()
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_SCHEMA_UPDATE": "True",
            "VIRTUAL_ENV": str(VENV),
            "PATH": f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def run(bench: Bench, baseline: Baseline) -> list[Row]:
    """Saturation and 1-connection latency through LiteLLM proxy on the gateway's core, against the same upstream."""
    section = "LiteLLM proxy"
    try:
        exe, version = ensure_installed()
    except Unavailable as exc:
        return [skipped_row(section, str(exc))]
    assert bench.upstreams is not None
    port = free_port()
    config = write_config(bench.tmp / "litellm.yaml", bench.upstreams.fast)
    started = time.perf_counter()
    child = bench.procs.start("litellm", bench.on_gateway_core(command(exe, config, port)), env=environment())
    try:
        try:
            startup = wait_healthy(child, port, HEALTH_PATH, START_TIMEOUT_S, started)
        except RuntimeError as exc:
            return [skipped_row(section, f"LiteLLM {version} did not become healthy: {str(exc)[:300]}")]
        auth = f"auth={MASTER_KEY}"
        bench.wrk(port, 8, "bench", auth, seconds=bench.durations.warmup_s)
        saturation = bench.wrk(port, 64, "bench", auth, watch=child.pid)
        latency = bench.wrk(port, 1, "bench", auth, watch=child.pid)
        rss = group_rss_kib(child.pid)
    finally:
        bench.procs.stop(child)
    times_faster = baseline.gateway_64.rps / saturation.rps if saturation.rps else float("inf")
    label = f"LiteLLM {version}"
    return [
        compare_row(
            f"{label}: saturation, 64 conn",
            baseline.direct_64,
            saturation,
            target=f"llm-gateway >= {LITELLM_TIMES_TARGET:g}x this",
            met=times_faster >= LITELLM_TIMES_TARGET,
            note=f"llm-gateway's saturation ({baseline.gateway_64.rps:,.0f} req/s) is {times_faster:,.1f}x LiteLLM's",
            extra={"gateway_times_litellm": times_faster},
        ),
        compare_row(f"{label}: added latency, 1 conn", baseline.direct_1, latency),
        info_row(
            f"{label}: start-up, RSS",
            f"{startup:.2f} s, {rss * 1024 / 1e6:.0f} MB",
            note=f"LiteLLM proxy in {VENV} (its own venv, never a gateway dependency), 1 worker, master key",
            startup_s=startup,
            rss_kib=rss,
        ),
    ]

"""``llm-gateway serve`` as a user runs it: a real process, configured by the environment, its output in a file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def user_env(*settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the gateway's keys, URLs and model file (tests set their own), then
    each of ``settings`` over it."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_URL"))}
    env.pop("GATEWAY_CONFIG", None)
    for layer in settings:
        env |= layer
    return env


def start_serve(env: Mapping[str, str], cwd: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """``python -m llm_gateway serve OPTIONS`` in ``cwd``, stdout and stderr into ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve", *options],
            env=dict(env),
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def answers(url: str, status: int = 200) -> bool:
    """Whether GET ``url`` answers ``status`` (False while nothing listens)."""
    try:
        return httpx.get(url, timeout=1).status_code == status
    except httpx.TransportError:
        return False


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until GET ``url`` answers 200; fails with the log if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not answers(url):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout:g} s:\n{log.read_text()}"
        time.sleep(0.1)

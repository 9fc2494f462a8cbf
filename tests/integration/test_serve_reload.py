"""``llm-gateway serve --reload`` (development): an edit of the GATEWAY_CONFIG file is served without a restart by hand.

A real process, as a developer runs it: uvicorn's reloader (watchfiles) starts a new server process when the
model file (or the package's source) changes, and that process reads the file afresh.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.identity_support import ADMIN_API_KEY, create_key
from tests.serve_support import start_serve, user_env, wait_for
from tests.services import free_port, port_open, terminate

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 60.0  # the reloader, then the server process it spawns, each import the package
RELOAD_TIMEOUT_SECONDS = 30.0


def model_file(*groups: str) -> str:
    lines = ["providers:", "  openai: {type: openai}", "models:"]
    return "\n".join([*lines, *(f"  {group}: [{{provider: openai, model: gpt-4o-mini}}]" for group in groups)]) + "\n"


def model_ids(base_url: str, key: str) -> list[str] | None:
    """The listed models, or None while no server process answers (between two of them)."""
    try:
        response = httpx.get(f"{base_url}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=2)
    except httpx.TransportError:
        return None
    return [model["id"] for model in response.json()["data"]] if response.status_code == 200 else None


def test_serve_reload_serves_an_edited_model_file(tmp_path: Path, openai_fake: FakeProvider) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(model_file("first"))
    port = free_port()
    env = user_env(openai_fake.env, {"GATEWAY_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db"})
    env |= {"PORT": str(port), "HOST": "127.0.0.1", "ADMIN_API_KEY": ADMIN_API_KEY, "LOG_LEVEL": "WARNING"}
    log = tmp_path / "serve.log"
    process = start_serve(env, tmp_path, log, "--reload")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base_url}/health", process, log, START_TIMEOUT_SECONDS)
        key = create_key(base_url)
        assert model_ids(base_url, key) == ["first"]

        config.write_text(model_file("first", "second"))
        deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
        while (ids := model_ids(base_url, key)) != ["first", "second"]:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"still {ids} after the edit:\n{log.read_text()}"
            time.sleep(0.2)
        chat = {"model": "second", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(
            f"{base_url}/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {key}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
    finally:
        terminate(process, grace=15)
    assert not port_open(port), "the server process outlived its reloader"
    assert "Traceback" not in log.read_text(), log.read_text()

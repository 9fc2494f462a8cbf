"""`llm-gateway serve` as a user runs it: a real process, configured by the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes import Fail, FakeProvider
from tests.identity_support import ADMIN_API_KEY, create_key
from tests.services import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT_SECONDS = 20.0


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db", "LOG_LEVEL": "WARNING"})
    env.pop("REDIS_URL", None)
    env.pop("GATEWAY_CONFIG", None)
    return env


@pytest.fixture
def served(tmp_path: Path, openai_fake: FakeProvider, anthropic_fake: FakeProvider) -> Iterator[str]:
    port = free_port()
    env = {**base_env(tmp_path), **openai_fake.env, **anthropic_fake.env, "PORT": str(port), "HOST": "127.0.0.1"}
    env["ADMIN_API_KEY"] = ADMIN_API_KEY
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
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the gateway did not become healthy"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_serve_answers_health_and_a_completion(served: str, openai_fake: FakeProvider) -> None:
    client = openai.OpenAI(base_url=f"{served}/v1", api_key=create_key(served), max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello from openai"
    assert openai_fake.count == 1


def test_openai_500_comes_back_from_anthropic(served: str, openai_fake: FakeProvider) -> None:
    openai_fake.push(Fail(500))
    client = openai.OpenAI(base_url=f"{served}/v1", api_key=create_key(served), max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello from anthropic"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "not-a-port"}, "PORT"),
        ({"GATEWAY_CONFIG": "missing.yaml"}, "GATEWAY_CONFIG"),
        ({"WORKERS": "2"}, "REDIS_URL"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_field(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "serve"],
        env={**base_env(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("provider", "hidden", "extra"),
    [
        ("{type: bedrock, region: us-east-1}", "botocore", "bedrock"),
        ("{type: vertex, project: p, location: global}", "google.auth", "vertex"),
    ],
)
def test_a_cloud_provider_without_its_extra_stops_start_up_naming_the_extra(
    tmp_path: Path, provider: str, hidden: str, extra: str
) -> None:
    """As on a machine where the extra was not installed: the module is hidden from the process (a ``None`` in
    ``sys.modules`` is how Python marks a module that cannot be imported)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nsys.modules[{hidden!r}] = None\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"providers:\n  cloud: {provider}\nmodels:\n  m: [{{provider: cloud, model: x}}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "serve"],
        env={**base_env(tmp_path), "GATEWAY_CONFIG": str(config), "PYTHONPATH": str(site)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"llm-gateway: configuration error: providers.cloud: type {provider[7 : provider.index(',')]} needs {hidden}, "
        f"which is not installed: pip install 'llm-gateway[{extra}]'"
    )

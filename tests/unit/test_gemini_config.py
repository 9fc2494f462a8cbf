"""Vertex AI's credentials resolved at construction (a key file, application default credentials, or a clear
ConfigError), and its endpoint per location."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.providers.gemini.client import VertexProvider
from llm_gateway.settings import ConfigError, ProviderConfig
from tests.fakes.google_token import TokenServer, write_service_account


def vertex(**fields: str) -> ProviderConfig:
    return ProviderConfig.model_validate({"type": "vertex", "project": "p", "location": "us-central1", **fields})


@pytest.fixture
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GOOGLE_APPLICATION_CREDENTIALS, no gcloud configuration, no metadata server probe."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.mark.usefixtures("no_ambient_credentials")
def test_no_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        VertexProvider("gcp", vertex())
    message = str(caught.value)
    assert message.startswith("providers.gcp: no usable Google credentials for type vertex")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "credentials_file" in message


def test_a_missing_or_broken_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"credentials_file /nonexistent\.json"):
        VertexProvider("gcp", vertex(credentials_file="/nonexistent.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "service_account"}')
    with pytest.raises(ConfigError, match=r"providers\.gcp"):
        VertexProvider("gcp", vertex(credentials_file=str(broken)))


@pytest.mark.usefixtures("no_ambient_credentials")
async def test_application_default_credentials_and_endpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = write_service_account(tmp_path / "sa.json", "http://127.0.0.1:9/token", TokenServer())
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    regional = VertexProvider("gcp", vertex())
    assert (regional.transport.host, regional.transport.port) == ("us-central1-aiplatform.googleapis.com", 443)
    head = regional.heads("gemini-2.5-flash").chat
    assert head.startswith(
        b"POST /v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent "
    )
    assert regional.heads("text-embedding-005").embed.split(b" ")[1].endswith(b"/text-embedding-005:predict")
    world = VertexProvider("gcp", vertex(location="global", credentials_file=str(key_file)))
    assert world.transport.host == "aiplatform.googleapis.com"
    local = VertexProvider("gcp", vertex(credentials_file=str(key_file), base_url="http://127.0.0.1:8080"))
    assert (local.transport.host, local.transport.port) == ("127.0.0.1", 8080)
    for provider in (regional, world, local):
        await provider.aclose()

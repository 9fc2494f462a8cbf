"""Pytest fixtures: one started fake per provider, stopped after the test.

Load with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the top-level ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .google_token import write_service_account
from .upstream import FakeProvider

__all__ = [
    "anthropic_fake",
    "azure_fake",
    "bedrock_fake",
    "gemini_fake",
    "groq_fake",
    "openai_fake",
    "vertex_credentials",
    "vertex_fake",
]


@pytest.fixture
def openai_fake() -> Iterator[FakeProvider]:
    """A fake OpenAI at ``openai_fake.base_url`` (ends in ``/v1``)."""
    with FakeProvider("openai") as fake:
        yield fake


@pytest.fixture
def anthropic_fake() -> Iterator[FakeProvider]:
    """A fake Anthropic at ``anthropic_fake.base_url`` (no ``/v1``; clients append ``/v1/messages``)."""
    with FakeProvider("anthropic") as fake:
        yield fake


@pytest.fixture
def groq_fake() -> Iterator[FakeProvider]:
    """A fake Groq at ``groq_fake.base_url`` (ends in ``/openai/v1``)."""
    with FakeProvider("groq") as fake:
        yield fake


@pytest.fixture
def azure_fake() -> Iterator[FakeProvider]:
    """A fake Azure OpenAI resource at ``azure_fake.base_url`` (its origin; clients add ``/openai/…``)."""
    with FakeProvider("azure") as fake:
        yield fake


@pytest.fixture
def gemini_fake() -> Iterator[FakeProvider]:
    """A fake Gemini API at ``gemini_fake.base_url`` (no path; clients append ``/v1beta/models/…``)."""
    with FakeProvider("gemini") as fake:
        yield fake


@pytest.fixture
def vertex_fake() -> Iterator[FakeProvider]:
    """A fake Vertex AI (project ``test-project``, location ``us-central1``) at ``vertex_fake.base_url``, with
    its OAuth token endpoint at ``{base_url}/token`` (``vertex_credentials`` writes a key file that uses it)."""
    with FakeProvider("vertex") as fake:
        yield fake


@pytest.fixture
def vertex_credentials(vertex_fake: FakeProvider, tmp_path: Path) -> Path:
    """A service-account key file (a new RSA key the fake trusts) whose ``token_uri`` is the fake's."""
    tokens = getattr(vertex_fake.wire, "tokens", None)
    assert tokens is not None
    return write_service_account(tmp_path / "service-account.json", f"{vertex_fake.base_url}/token", tokens)


@pytest.fixture
def bedrock_fake() -> Iterator[FakeProvider]:
    """A fake Bedrock runtime at ``bedrock_fake.base_url`` (``base_url`` of a ``type: bedrock`` provider): SigV4 with
    ``bedrock_wire.ACCESS_KEY_ID`` and ``bedrock_fake.api_key`` as the secret key, or the key as a Bedrock API key."""
    with FakeProvider("bedrock") as fake:
        yield fake

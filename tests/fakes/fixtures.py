"""Pytest fixtures: one started fake per provider, stopped after the test.

Load with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the top-level ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .upstream import FakeProvider

__all__ = ["anthropic_fake", "bedrock_fake", "groq_fake", "openai_fake"]


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
def bedrock_fake() -> Iterator[FakeProvider]:
    """A fake Bedrock runtime at ``bedrock_fake.base_url`` (``base_url`` of a ``type: bedrock`` provider): SigV4 with
    ``bedrock_wire.ACCESS_KEY_ID`` and ``bedrock_fake.api_key`` as the secret key, or the key as a Bedrock API key."""
    with FakeProvider("bedrock") as fake:
        yield fake

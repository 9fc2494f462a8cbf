"""Pytest fixtures: one started fake per provider, stopped after the test.

Load with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the top-level ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .upstream import FakeProvider

__all__ = ["anthropic_fake", "azure_fake", "groq_fake", "openai_fake"]


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

"""The official OpenAI SDK pointed straight at a fake, as the fakes' self-tests use it."""

from __future__ import annotations

import openai

from .upstream import FakeProvider


def sdk(fake: FakeProvider, api_key: str | None = None) -> openai.OpenAI:
    """No retries, so each call is one request; ``verify=False`` skips loading CA certificates (~0.2 s)."""
    return openai.OpenAI(
        base_url=fake.base_url,
        api_key=api_key or fake.api_key,
        max_retries=0,
        timeout=5,
        http_client=openai.DefaultHttpxClient(verify=False),
    )

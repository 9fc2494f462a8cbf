"""Fake upstream LLM providers (OpenAI, Anthropic, Groq) on real loopback HTTP, scripted per test.

Typical use::

    fake.push(Fail(529), Reply("second try"))   # next two chat requests
    ...
    assert fake.chat_requests[0].body["max_tokens"] == 256
"""

from .behaviours import Behaviour, Delay, Drop, EchoHeaders, Fail, FailMidStream, Flood, Raw, Reply, Stall, StreamError
from .upstream import FakeProvider, ProviderKind, Recorded

__all__ = [
    "Behaviour",
    "Delay",
    "Drop",
    "EchoHeaders",
    "Fail",
    "FailMidStream",
    "FakeProvider",
    "Flood",
    "ProviderKind",
    "Raw",
    "Recorded",
    "Reply",
    "Stall",
    "StreamError",
]

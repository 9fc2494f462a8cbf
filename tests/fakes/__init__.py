"""Fake upstream LLM providers (OpenAI, Anthropic, Groq) on real loopback HTTP, scripted per test.

Typical use::

    fake.push(Fail(529), Reply("second try"))   # next two chat requests
    ...
    assert fake.chat_requests[0].body["max_tokens"] == 256
    assert answer["data"][0]["embedding"] == fake_embedding("hello")   # POST /v1/embeddings {"input": "hello"}
"""

from .behaviours import Behaviour, Delay, Drop, EchoHeaders, Fail, FailMidStream, Flood, Raw, Reply, Stall, StreamError
from .openai_wire import EMBEDDING_DIMENSIONS, embedding_base64, embedding_tokens, fake_embedding
from .upstream import FakeProvider, ProviderKind, Recorded

__all__ = [
    "CHAT_GROUPS",
    "EMBEDDING_DIMENSIONS",
    "EMBEDDING_GROUPS",
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
    "embedding_base64",
    "embedding_tokens",
    "fake_embedding",
]

# The built-in model groups (settings.DEFAULT_MODEL_GROUPS), as /v1/models lists them: sorted by name.
CHAT_GROUPS = ("gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini")
EMBEDDING_GROUPS = ("text-embedding-3-large", "text-embedding-3-small", "text-embedding-ada-002")

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
    "EMBEDDING_DIMENSIONS",
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

"""The gateway's upstream HTTP client: a pooled HTTP/1.1 transport, an SSE parser, their exceptions.

Providers and telemetry (Helicone) import from here. ``transport.py`` is the pool and ``post()``,
``connection.py`` one connection and its response, ``sse.py`` the event-stream parser, ``errors.py``
the exception tree, ``bounds.py`` the limits every pool enforces.
"""

from llm_gateway.http.bounds import DEFAULT_BOUNDS, UpstreamBounds
from llm_gateway.http.connection import UpstreamResponse
from llm_gateway.http.errors import (
    BodyCut,
    ConnectError,
    ConnectTimeout,
    NetworkError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    ResponseTooLarge,
    TimeoutException,
    TransportError,
)
from llm_gateway.http.sse import SSEDecoder, SSEEvent, iter_sse
from llm_gateway.http.transport import Exchange, HttpTransport

__all__ = [
    "DEFAULT_BOUNDS",
    "BodyCut",
    "ConnectError",
    "ConnectTimeout",
    "Exchange",
    "HttpTransport",
    "NetworkError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ResponseTooLarge",
    "SSEDecoder",
    "SSEEvent",
    "TimeoutException",
    "TransportError",
    "UpstreamBounds",
    "UpstreamResponse",
    "iter_sse",
]

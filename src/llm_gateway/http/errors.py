"""What the upstream HTTP client raises, split as httpx splits it: by what the caller may safely do next.

The tree (``providers.adapter.map_transport_errors`` maps every leaf onto the gateway's ``UpstreamError``)::

    TransportError
    ├── TimeoutException
    │   ├── ConnectTimeout        no connection within the timeout: nothing was sent
    │   └── ReadTimeout           no byte within the timeout once the request was written
    ├── NetworkError
    │   ├── ConnectError          refused, unresolvable, TLS refused: nothing was sent, safe to send elsewhere
    │   └── ReadError             the connection failed after the request was written (it may have been processed)
    │       └── BodyCut           ... closed before the response was whole
    ├── RemoteProtocolError       the bytes are not valid HTTP/1.1 (or a corrupt gzip body, an unknown encoding)
    └── ResponseTooLarge          the body (or one event-stream line) passed its bound: refused, not buffered

None of them is an ``OSError``: the transport wraps the socket layer's errors, so a caller catches ``TransportError``.
"""

from __future__ import annotations


class TransportError(Exception):
    """The exchange with the upstream failed below HTTP semantics (no usable status and body)."""


class TimeoutException(TransportError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class NetworkError(TransportError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class BodyCut(ReadError):
    pass


class RemoteProtocolError(TransportError):
    pass


class ResponseTooLarge(TransportError):
    pass

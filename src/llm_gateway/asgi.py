"""What the gateway's own ASGI layers read off a scope, shared by ``api/`` and ``telemetry/``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """The path the routes match: ``scope["path"]`` less the ``root_path`` it starts with.

    Servers put the mount point in both (``uvicorn --root-path /gw``: path ``/gw/v1/models``), as the
    ASGI spec and Starlette's router expect; the router strips it the same way.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path

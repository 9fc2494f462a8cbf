"""A route class whose JSON bodies keep their numbers exact: ``0.1`` is read as ``Decimal("0.1")``, not as the
float nearest to it. The admin routes use it, where a number may be a US dollar budget.

FastAPI reads a body with ``Request.json()``; this request class parses it with ``parse_float=Decimal``.
Integers stay ints, and a decimal with no fraction (``60.0``) still validates as an int.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class _ExactNumbersRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class ExactNumbersRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(_ExactNumbersRequest(request.scope, request.receive))

        return exact

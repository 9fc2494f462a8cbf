"""The request pipeline of ``POST /v1/chat/completions``, one small step per function.

identify -> admit -> cache -> route -> settle -> record (DESIGN.md). Each step lives in its
own package; this module only puts them in order, so the order can be read in one place.
"""

from __future__ import annotations

from llm_gateway.auth.identity import Identity
from llm_gateway.providers.router import RoutedCompletion, RoutedStream, Router
from llm_gateway.schemas.core import ChatRequest


class ChatPipeline:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def complete(self, request: ChatRequest, identity: Identity) -> RoutedCompletion:
        return await self.router.complete(request.body, request.model)

    async def stream(self, request: ChatRequest, identity: Identity) -> RoutedStream:
        return await self.router.stream(request.body, request.model)

"""Annotated dependencies shared by the routes: what a route may ask the app for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_gateway.auth.admin import Accounts
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.service import AuthService
from llm_gateway.errors import AuthenticationFailed
from llm_gateway.pipeline import Pipeline
from llm_gateway.settings import GatewayConfig


async def _pipeline(request: Request) -> Pipeline:  # async: a sync dependency runs in a thread
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


async def _config(request: Request) -> GatewayConfig:
    config: GatewayConfig = request.app.state.config
    return config


def _auth(request: Request) -> AuthService:
    auth: AuthService = request.app.state.auth
    return auth


async def resolve_identity(request: Request) -> Identity:
    """The caller, or 401. Kept on ``request.state`` for what runs after the route (logs, metrics)."""
    client = request.client
    identity = await _auth(request).resolver.resolve(request.headers, client.host if client else None)
    request.state.identity = identity
    return identity


async def _caller(identity: Annotated[Identity, Depends(resolve_identity)]) -> Identity:
    if identity.anonymous:
        raise AuthenticationFailed("This endpoint needs an API key or a JWT: send 'Authorization: Bearer ...'.")
    return identity


async def _accounts(request: Request) -> Accounts:
    accounts = _auth(request).accounts
    accounts.database.require_ready("account store")  # 503 at once, not a query against tables not made yet
    return accounts


PipelineDep = Annotated[Pipeline, Depends(_pipeline)]
ConfigDep = Annotated[GatewayConfig, Depends(_config)]
# Any caller, anonymous ones included (when ALLOW_ANONYMOUS).
IdentityDep = Annotated[Identity, Depends(resolve_identity)]
# A caller with an API key or a JWT: anonymous callers get 401.
CallerDep = Annotated[Identity, Depends(_caller)]
AccountsDep = Annotated[Accounts, Depends(_accounts)]

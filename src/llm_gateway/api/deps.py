"""Annotated dependencies shared by the routes: what a route may ask the app for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_gateway.pipeline import ChatPipeline
from llm_gateway.settings import GatewayConfig


def _pipeline(request: Request) -> ChatPipeline:
    pipeline: ChatPipeline = request.app.state.pipeline
    return pipeline


def _config(request: Request) -> GatewayConfig:
    config: GatewayConfig = request.app.state.config
    return config


PipelineDep = Annotated[ChatPipeline, Depends(_pipeline)]
ConfigDep = Annotated[GatewayConfig, Depends(_config)]

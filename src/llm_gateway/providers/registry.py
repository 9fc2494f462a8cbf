"""Provider ``type`` (from the YAML file) -> adapter class, imported only when configured."""

from __future__ import annotations

import importlib
from typing import Any

from llm_gateway.http import UpstreamBounds
from llm_gateway.providers.base import Provider
from llm_gateway.settings import ProviderConfig

PROVIDER_TYPES = {
    "openai": "llm_gateway.providers.openai_compat:OpenAICompatProvider",
    "anthropic": "llm_gateway.providers.anthropic.client:AnthropicProvider",
}


def provider_class(kind: str) -> Any:
    module_name, _, class_name = PROVIDER_TYPES[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_providers(configs: dict[str, ProviderConfig], bounds: UpstreamBounds) -> dict[str, Provider]:
    """One adapter (and so one pooled HTTP client, held to ``bounds``) per provider that has a key;
    the others are skipped."""
    return {
        name: provider_class(config.type)(name, config, bounds) for name, config in configs.items() if config.usable
    }

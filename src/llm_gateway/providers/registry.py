"""Provider ``type`` (from the YAML file) -> adapter class, imported only when configured (so botocore and
google-auth, the Bedrock and Vertex AI extras, are imported only by a gateway that has such a provider)."""

from __future__ import annotations

import importlib
from typing import Any

from llm_gateway.http import UpstreamBounds
from llm_gateway.providers.base import Provider
from llm_gateway.settings import ProviderConfig

PROVIDER_TYPES = {
    "openai": "llm_gateway.providers.openai_compat:OpenAICompatProvider",
    "anthropic": "llm_gateway.providers.anthropic.client:AnthropicProvider",
    "azure": "llm_gateway.providers.azure:AzureProvider",
    "bedrock": "llm_gateway.providers.bedrock.client:BedrockProvider",
    "gemini": "llm_gateway.providers.gemini.client:GeminiProvider",
    "vertex": "llm_gateway.providers.gemini.client:VertexProvider",
}
# An ``openai``-type provider whose server implements /v1/responses (``ProviderConfig.native_responses``).
NATIVE_RESPONSES_TYPE = "llm_gateway.providers.openai_responses:OpenAIResponsesProvider"


def provider_class(kind: str, *, native_responses: bool = False) -> Any:
    """The adapter class for ``kind``; with ``native_responses``, the one that also passes the Responses API
    through (settings refuse it for any type but ``openai``)."""
    module_name, _, class_name = (NATIVE_RESPONSES_TYPE if native_responses else PROVIDER_TYPES[kind]).partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_providers(configs: dict[str, ProviderConfig], bounds: UpstreamBounds) -> dict[str, Provider]:
    """One adapter (and so one pooled HTTP client, held to ``bounds``) per provider that has a key;
    the others are skipped."""
    return {
        name: provider_class(config.type, native_responses=config.native_responses(name))(name, config, bounds)
        for name, config in configs.items()
        if config.usable
    }

"""The OpenAI-compatible vendors users ask for most, as the README lists them: the ``base_url`` to configure on a
provider of ``type: openai``, the name that server takes for the completion cap, and genai-prices' vendor (None:
a self-hosted server, which genai-prices cannot price: give it a ``price:``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Vendor:
    name: str
    base_url: str
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"]
    prices_as: str | None
    model: str  # a model name it serves, for the examples
    stream_options: Literal["send", "omit"] = "send"
    refuses: tuple[str, ...] = ()  # fields the vendor's server answers with 422 (its fake does the same)


VENDORS = (
    Vendor("gemini-openai", "https://generativelanguage.googleapis.com/v1beta/openai", "max_completion_tokens",
           "google", "gemini-2.5-flash"),
    Vendor("mistral", "https://api.mistral.ai/v1", "max_tokens", "mistral", "mistral-small-latest", "omit",
           ("max_completion_tokens", "stream_options")),
    Vendor("deepseek", "https://api.deepseek.com", "max_tokens", "deepseek", "deepseek-chat"),
    Vendor("together", "https://api.together.xyz/v1", "max_tokens", "together",
           "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    Vendor("fireworks", "https://api.fireworks.ai/inference/v1", "max_tokens", "fireworks",
           "accounts/fireworks/models/llama-v3p1-8b-instruct"),
    Vendor("xai", "https://api.x.ai/v1", "max_completion_tokens", "x-ai", "grok-3-mini"),
    Vendor("openrouter", "https://openrouter.ai/api/v1", "max_completion_tokens", "openrouter", "openai/gpt-4o-mini"),
    Vendor("ollama", "http://localhost:11434/v1", "max_tokens", None, "llama3.2"),
    Vendor("vllm", "http://localhost:8000/v1", "max_completion_tokens", None, "Qwen/Qwen2.5-7B-Instruct"),
)  # fmt: skip

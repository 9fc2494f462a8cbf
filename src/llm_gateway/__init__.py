"""llm-gateway: an OpenAI-compatible gateway in front of OpenAI, Anthropic, Groq and friends."""

__version__ = "0.1.0"

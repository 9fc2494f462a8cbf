"""Anthropic Messages API provider: pure translation to and from OpenAI's shapes, plus the HTTP client."""

"""Translations between two inbound API formats (an Anthropic Messages call served by an OpenAI-compatible
deployment), as pure functions; translations toward one provider live beside that provider."""

"""Translations between two inbound API formats (an Anthropic Messages or OpenAI Responses call served by a
deployment that speaks Chat Completions), as pure functions; translations toward one provider live beside it."""

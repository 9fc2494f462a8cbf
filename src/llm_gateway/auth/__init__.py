"""Who is calling: API keys, JWTs and anonymous callers, resolved to one Identity."""

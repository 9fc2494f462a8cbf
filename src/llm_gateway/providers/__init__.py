"""LLM providers: one adapter per wire format, plus the router that falls back across them."""

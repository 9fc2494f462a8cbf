"""API surfaces as the pipeline sees them: one codec each (``base.Surface``).

``chat`` is OpenAI's Chat Completions; ``messages`` Anthropic's Messages API.
"""

"""Wire types (OpenAI's public shapes) and the gateway's internal request/response types."""

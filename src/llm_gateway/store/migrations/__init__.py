"""Alembic migrations (``script_location = llm_gateway.store:migrations``); a package so wheels ship it."""

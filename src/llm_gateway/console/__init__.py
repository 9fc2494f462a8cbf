"""The admin console at ``/ui``: server-rendered pages for the operators who hold ``ADMIN_API_KEY``.

``mount_console`` adds it to an app when the key is set (``/ui`` is a 404 otherwise); Jinja2 and the templates
are loaded only then. ``routes.py`` lists the pages, ``session.py`` says who may see them, ``security.py`` what
headers and cookies they carry, ``queries.py`` what they read from the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from llm_gateway.settings import Settings
    from llm_gateway.store.db import Database

CONSOLE_PREFIX = "/ui/"  # the only paths whose POSTs are forms (urlencoded), not JSON


def mount_console(app: FastAPI, settings: Settings) -> bool:
    """Add ``/ui`` to ``app`` when ``ADMIN_API_KEY`` is set; whether it was added."""
    if settings.admin_api_key is None:
        return False
    from llm_gateway.console.deps import Console
    from llm_gateway.console.routes import router

    app.state.console = Console(settings, settings.admin_api_key)
    app.include_router(router)
    return True


def attach_console(app: FastAPI, database: Database) -> None:
    """Give the console (when mounted) the database the lifespan opened: its sessions and ledger queries."""
    console = getattr(app.state, "console", None)
    if console is not None:
        console.attach(database)

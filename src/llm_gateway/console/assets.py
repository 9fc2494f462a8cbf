"""The console's static files, shipped inside the package and served from memory by the console itself.

Each URL carries a digest of the file's content (``/ui/static/<digest>/console.css``), so a browser may keep a
file for a year (``immutable``) and still gets the new one after an upgrade: pages are never cached, and name
the new digest. No CDN: the console works air-gapped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from starlette.responses import Response

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    digest: str


class Assets:
    """Every file under ``static/``, read once; ``url(name)`` is what templates link to."""

    def __init__(self, root: Traversable | None = None) -> None:
        self._files: dict[str, Asset] = {}
        self._load(root or files("llm_gateway.console").joinpath("static"), "")

    def _load(self, folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                self._load(entry, f"{name}/")
            elif not entry.name.startswith("."):
                body = entry.read_bytes()
                suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
                media_type = _TYPES.get(suffix, "text/plain; charset=utf-8")  # LICENSE files
                self._files[name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:12])

    def url(self, name: str) -> str:
        return f"/ui/static/{self._files[name].digest}/{name}"

    def response(self, digest: str, name: str) -> Response | None:
        """The file; cached for good when the digest is its current one (an old digest gets today's file, uncached)."""
        asset = self._files.get(name)
        if asset is None:
            return None
        cache = _IMMUTABLE if digest == asset.digest else "no-cache"
        return Response(asset.body, media_type=asset.media_type, headers={"cache-control": cache})

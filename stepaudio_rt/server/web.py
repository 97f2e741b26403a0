"""The browser page: ``/`` serves ``static/index.html``, ``/static/*`` its script, worklet and style.

Plain files, no build step: the page talks to ``/v1/realtime`` with the browser subprotocol auth
(``realtime`` + ``openai-insecure-api-key.<key>``), like any other client of the protocol.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
# Revalidate on every load: a stale app.js after an upgrade would speak an old protocol version.
_NO_CACHE = {"Cache-Control": "no-cache"}


def mount_web(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)

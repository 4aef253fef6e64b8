"""The dashboard's routes: `/` serves its page and `/static/...` the page's scripts and styles.
It needs only FastAPI: the page reads the farm through the public API, as any client does."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}


def mount_dashboard(app: FastAPI) -> None:
    """`/` serves index.html and `/static/...` the page's scripts and styles."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_CACHE)

    app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")

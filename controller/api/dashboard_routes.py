"""The dashboard at `/`: static files of the `dashboard` package, served without importing it."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

NO_CACHE = {"Cache-Control": "no-cache"}


def mount_dashboard(app: FastAPI) -> None:
    """`/` serves index.html and `/static/...` the page's scripts and styles."""
    static = Path(str(files("dashboard") / "static"))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", headers=NO_CACHE)

    app.mount("/static", StaticFiles(directory=static), name="dashboard-static")

"""The live page: the board index and one board's page, served from ``projections/static``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(str(resources.files("projections").joinpath("static")))

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index_page() -> FileResponse:
    """The live page's board index."""
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/boards/{board}", include_in_schema=False)
async def board_page(board: str) -> FileResponse:
    """One board's live page (the board is read by the page's script)."""
    return FileResponse(STATIC_DIR / "board.html")

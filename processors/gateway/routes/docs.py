"""API docs that work offline: Swagger UI at /docs and ReDoc at /redoc, assets served locally.

FastAPI's own pages load Swagger UI, ReDoc and their fonts from CDNs, so they are blank on a
machine without internet access. The assets here come from the ``fastapi-offline`` package
(MIT; it ships Swagger UI, Apache-2.0, and ReDoc, MIT) and are served under ``/static/docs``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

__all__ = ["DOCS_ASSETS", "DOCS_STATIC", "router"]

#: The folder of Swagger UI's and ReDoc's files (in the installed ``fastapi_offline`` package).
DOCS_ASSETS = Path(str(resources.files("fastapi_offline").joinpath("static")))
#: Where the gateway serves them.
DOCS_STATIC = "/static/docs"

router = APIRouter()


def _root(request: Request) -> str:
    return str(request.scope.get("root_path") or "")


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for /openapi.json, every asset from this gateway."""
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="Leaderboard gateway - Swagger UI",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
    )


@router.get("/docs/oauth2-redirect", include_in_schema=False)
async def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for /openapi.json, without web fonts from elsewhere."""
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}/openapi.json",
        title="Leaderboard gateway - ReDoc",
        redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
        with_google_fonts=False,
    )

"""The API's description pages, Swagger UI (`/docs`) and ReDoc (`/redoc`), each with a content security policy of
its own: they load their scripts and styles from cdn.jsdelivr.net, and Swagger UI starts from an inline script,
allowed by its hash alone. ReDoc injects its styles as it renders, so its styles are allowed inline."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

CDN = "https://cdn.jsdelivr.net"
FAVICON = "https://fastapi.tiangolo.com"
_COMMON = "default-src 'none'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
SWAGGER_POLICY = f"{_COMMON}; script-src {CDN} {{scripts}}; style-src {CDN}; img-src 'self' data: {FAVICON}"
REDIRECT_POLICY = f"{_COMMON}; script-src {{scripts}}"
REDOC_POLICY = (
    f"{_COMMON}; script-src {CDN}; style-src https://fonts.googleapis.com 'unsafe-inline'; "
    f"font-src https://fonts.gstatic.com; img-src 'self' data: {FAVICON} https://cdn.redoc.ly; worker-src blob:"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
    )
    return _with_policy(page, SWAGGER_POLICY)


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return _with_policy(get_swagger_ui_oauth2_redirect_html(), REDIRECT_POLICY)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(openapi_url=f"{root}/openapi.json", title=f"{request.app.title} - ReDoc")
    return _with_policy(page, REDOC_POLICY)


def _with_policy(page: HTMLResponse, policy: str) -> HTMLResponse:
    """The page with `policy`, its `{scripts}` the hashes of the page's inline scripts."""
    scripts = " ".join(f"'sha256-{_digest(script)}'" for script in _INLINE_SCRIPT.findall(bytes(page.body).decode()))
    page.headers["Content-Security-Policy"] = policy.format(scripts=scripts)
    return page


def _digest(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()

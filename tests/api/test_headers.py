"""Security headers on every answer, and a content security policy the dashboard's own files keep to."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from importlib.resources import files

from fastapi.testclient import TestClient

from facmon.api.app import create_app
from facmon.api.headers import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from tests.raw_asgi import call

STATIC = files("facmon.api") / "static"


def assert_secured(headers: Mapping[str, str], policy: str = CONTENT_SECURITY_POLICY) -> None:
    assert headers.get("content-security-policy") == policy
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"


def test_every_answer_carries_the_security_headers(service) -> None:
    svc, _clock, api = service
    anonymous = TestClient(svc.app)
    for answer in (
        anonymous.get("/"),
        anonymous.get("/static/dashboard.js"),
        anonymous.get("/healthz"),
        anonymous.get("/ack/not-a-link"),
        anonymous.get("/api/v1/devices"),  # 401
        anonymous.post("/api/v1/auth/login", json={"username": "li.na", "password": "wrong"}),
        api.get("/api/v1/devices"),
        api.get("/api/v1/devices/pump-9"),  # 404
        api.post("/api/v1/alarms/ack", json={"ids": "all"}),  # 422
    ):
        assert_secured(answer.headers)
    too_large = call(svc.app, "POST", "/api/v1/alarms/ack", headers={"content-length": str(10**9)})
    assert too_large.status == 413
    assert_secured(too_large.headers)


def test_an_unexpected_error_carries_them_too(service) -> None:
    """A 500 is sent from outside the middlewares."""
    svc, _clock, api = service
    app = create_app(svc.app.state.services)

    @app.get("/api/v1/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    answer = TestClient(app, headers=api.headers, raise_server_exceptions=False).get("/api/v1/broken")
    assert answer.status_code == 500
    assert_secured(answer.headers)


def test_the_dashboard_policy_allows_only_facmon_s_own_files() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert {directives[d] for d in ("script-src", "style-src", "connect-src", "form-action")} == {"'self'"}
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
    assert set(SECURITY_HEADERS) >= {"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"}


def test_the_dashboard_s_files_keep_to_the_policy(service) -> None:
    """No inline script, style or event handler, nothing loaded from elsewhere, no eval: what the policy would
    block, and so break in the browser."""
    svc, _clock, _ = service
    pages = [(STATIC / "index.html").read_text(encoding="utf-8"), TestClient(svc.app).get("/ack/not-a-link").text]
    for page in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script"
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page), "inline style or event handler"
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "loaded from elsewhere"
    for script in ("dashboard.js", "i18n.js"):
        code = (STATIC / script).read_text(encoding="utf-8")
        assert not re.search(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]", code), script
        assert not re.search(r"style=", code), f"{script} writes inline style attributes"


def test_the_api_description_pages_bring_a_policy_of_their_own(service) -> None:
    svc, _clock, _ = service
    anonymous = TestClient(svc.app)
    for path in ("/docs", "/docs/oauth2-redirect"):
        page = anonymous.get(path)
        policy = page.headers["content-security-policy"]
        [script] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy, path  # that inline script, and none other
        assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
        assert_secured(page.headers, policy)
    redoc = anonymous.get("/redoc").headers["content-security-policy"]
    assert "script-src https://cdn.jsdelivr.net;" in redoc and "unsafe-eval" not in redoc


def test_a_page_of_an_app_behind_a_path_prefix_gets_the_hash_of_its_own_script(service) -> None:
    svc, _clock, _ = service
    app = create_app(svc.app.state.services)
    page = TestClient(app, root_path="/facmon").get("/docs")
    assert "url: '/facmon/openapi.json'" in page.text
    [script] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["content-security-policy"]

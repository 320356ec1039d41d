"""Templates, security headers, static files and error pages of the web UI.

Every UI answer goes through :func:`render` (or :func:`redirect`), so every page gets
the same headers: a Content-Security-Policy that allows scripts and styles only from
this server (no ``unsafe-inline``: a value rendered into a page can never run as script,
even if escaping failed somewhere), no framing (clickjacking on the confirm pages),
no referrer beyond this origin (keys and ids are in the URLs) and no caching (pages
hold state). Autoescaping is on for every template.

Inline SVG (charts) is allowed by this policy as markup; ``style="..."`` attributes
are not (CSP blocks them without ``unsafe-inline``): use presentation attributes
(``fill=``, ``width=``) or classes from ``static/ui.css``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from statestore.exceptions import AuthenticationError, StateStoreError

if TYPE_CHECKING:
    from statestore.server.ui.session import UiSession

__all__ = [
    "NAV",
    "NavItem",
    "error_page",
    "http_error_page",
    "redirect",
    "render",
    "router",
    "ui_path",
]

router = APIRouter()


@dataclass(frozen=True)
class NavItem:
    """A link in the header: shown when its page exists (and, if ``admin``, to admins)."""

    label: str
    path: str
    page: str
    admin: bool = False


NAV = (
    NavItem("Browse", "/ui/", "browse"),
    NavItem("Assets", "/ui/assets", "browse"),
    NavItem("Overview", "/ui/overview", "overview"),
    NavItem("Cleanup", "/ui/cleanup", "actions", admin=True),
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
    # a form POST, and the Origin check (session.check_form) would refuse every form.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=PackageLoader("statestore.server.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``in 3 h`` / ``5 min ago``: a coarse relative time for people."""
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or unit == "s":
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds")


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


_env.filters["ago"] = _ago
_env.filters["iso"] = _iso
_env.filters["size"] = _size
_env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)


def _app_path(request: Request) -> str:
    """The request's path (with its query) without the root path: what ``ui_path`` takes."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path + (f"?{request.url.query}" if request.url.query else "")


def ui_path(request: Request, path: str, **params: str | int | None) -> str:
    """``path`` under the app's root path, with ``params`` (``None`` dropped) as query."""
    root = request.scope.get("root_path", "")
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{root}{path}" + (f"?{query}" if query else "")


def _context(request: Request, ui: UiSession | None) -> dict[str, Any]:
    from statestore.server.ui import loaded_pages  # noqa: PLC0415 - the package imports us

    state = request.app.state.statestore
    pages = loaded_pages()
    admin = ui is not None and ui.grant.admin
    nav = [item for item in NAV if item.page in pages and (admin or not item.admin)]
    csrf = ui.csrf if ui is not None else ""

    def url(path: str, **params: str | int | None) -> str:
        return ui_path(request, path, **params)

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf" value="{}">').format(csrf)

    return {
        "request": request,
        "ui": ui,
        "grant": ui.grant if ui is not None else None,
        "read_only": state.read_only,
        "nav": nav,
        "current": request.url.path,
        "url": url,
        "csrf_field": csrf_field,
        "now": datetime.now(timezone.utc),
    }


def render(
    request: Request,
    ui: UiSession | None,
    template: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The page ``template`` rendered with the common context and the security headers."""
    page = _env.get_template(template).render({**_context(request, ui), **(context or {})})
    return HTMLResponse(page, status, headers=SECURITY_HEADERS)


def redirect(request: Request, path: str, **params: str | int | None) -> Response:
    """303 See Other to a UI path: after a POST, the browser GETs the result (no resubmit)."""
    return RedirectResponse(ui_path(request, path, **params), 303, headers=SECURITY_HEADERS)


def error_page(request: Request, exc: StateStoreError, status: int) -> Response:
    """A refused UI request as a page (the API answers problem documents instead)."""
    if isinstance(exc, AuthenticationError):
        # Not logged in, or the token expired: back to the form, then to this page.
        target = _app_path(request) if request.method == "GET" else None
        # A fixed reason code, not the message: the login page must not show text that
        # anyone could put in a link.
        return redirect(request, "/ui/login", next=target, reason="session")
    from statestore.server.ui.session import peek_session  # noqa: PLC0415 - it imports us

    context = {"status": status, "kind": type(exc).__name__, "message": str(exc)}
    return render(request, peek_session(request), "error.html", context, status)


def http_error_page(request: Request, status: int, detail: str) -> Response:
    """An unknown UI path (404) or the like, as a page."""
    from statestore.server.ui.session import peek_session  # noqa: PLC0415 - it imports us

    context = {"status": status, "kind": detail, "message": f"{request.url.path}: {detail}"}
    return render(request, peek_session(request), "error.html", context, status)


_STATIC: dict[str, tuple[bytes, str]] = {}
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _static(name: str) -> tuple[bytes, str] | None:
    if not _STATIC:
        folder = resources.files("statestore.server.ui") / "static"
        for entry in folder.iterdir():
            suffix = entry.name[entry.name.rfind(".") :]
            if suffix in _TYPES:
                _STATIC[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return _STATIC.get(name)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The stylesheet and script, from the package (a fixed set: no path is opened)."""
    found = _static(name)
    if found is None:
        return Response("not found", 404, media_type="text/plain")
    body, media_type = found
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(body, 200, headers, media_type=media_type)

"""Logging in with a token, the session cookie, CSRF and the read-only switch.

**No server-side sessions.** Logging in is pasting a token (the API's own: admin or a
task's) into a form; the server verifies it like any API request and puts the token
itself in a cookie, so every replica can verify the next request on its own and the
UI sees exactly what the token grants, until it expires. The cookie is ``HttpOnly``
(no script can read it), ``SameSite=Strict`` (no other site's page can make the browser
send it), ``Secure`` when the page was served over https, and scoped to ``/ui``.

**CSRF.** Every state-changing form carries a token derived from the session cookie:
``HMAC-SHA256(key, cookie)``, keyed by a digest of the server's token-verifying key
(the same on every replica, so no shared secret is needed). A page of another origin
cannot read the cookie, so it cannot compute the value; every POST is also refused
when its ``Origin`` (or ``Sec-Fetch-Site``) says it came from elsewhere. The login form
has no session yet: the Origin check and SameSite guard it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import SplitResult, parse_qsl, urlsplit

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from statestore import wire
from statestore.exceptions import (
    AccessDeniedError,
    AuthenticationError,
    InvalidValueError,
    ReadOnlyServerError,
)
from statestore.server.auth import TokenVerifier
from statestore.server.body import read_body
from statestore.server.state import ServerState
from statestore.server.ui.render import redirect, render

__all__ = [
    "COOKIE",
    "Admin",
    "Session",
    "UiSession",
    "admin_session",
    "check_form",
    "peek_session",
    "read_form",
    "refuse_if_read_only",
    "router",
    "ui_session",
]

COOKIE = "statestore_ui"
FORM_BYTES = 16 * 1024 * 1024
"""The cap on a form body (an edited value is the largest): the API's own cap applies
to the value inside it too."""

router = APIRouter()


@dataclass(frozen=True)
class UiSession:
    """A logged-in browser: the verified grant, its token, and its CSRF value."""

    grant: wire.Grant
    token: str
    csrf: str


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.statestore_verifier
    return verifier


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.statestore
    return state


def csrf_for(verifier: TokenVerifier, token: str) -> str:
    """The CSRF value of a session: unforgeable without its (HttpOnly) cookie."""
    message = b"ui-csrf\x00" + token.encode()
    return hmac.new(verifier.fingerprint(), message, hashlib.sha256).hexdigest()


async def ui_session(request: Request) -> UiSession:
    """The dependency of every UI page: the cookie's token, verified (else a redirect
    to the login form, through :func:`~.render.error_page`)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise AuthenticationError("log in with a token to use the web UI")
    verifier = _verifier(request)
    grant = verifier.verify(token)
    return UiSession(grant, token, csrf_for(verifier, token))


def peek_session(request: Request) -> UiSession | None:
    """The session, if the request has a valid one (an error page's header and nav)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    verifier = _verifier(request)
    try:
        grant = verifier.verify(token)
    except AuthenticationError:
        return None
    return UiSession(grant, token, csrf_for(verifier, token))


async def admin_session(request: Request) -> UiSession:
    """:func:`ui_session` for pages only an admin token may see."""
    ui = await ui_session(request)
    if not ui.grant.admin:
        raise AccessDeniedError("this page needs an admin token")
    return ui


Session = Annotated[UiSession, Depends(ui_session)]
Admin = Annotated[UiSession, Depends(admin_session)]


def refuse_if_read_only(request: Request) -> None:
    """Raise :class:`ReadOnlyServerError` when the server was started read-only."""
    if _state(request).read_only:
        raise ReadOnlyServerError("the server is read-only (started with --read-only)")


def _check_origin(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise AccessDeniedError(f"refused a form sent from another site (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser's form (every current browser sends Origin on a POST)
    if origin == "null" or not _same_host(urlsplit(origin), request.headers.get("host", "")):
        raise AccessDeniedError(f"refused a form sent from another origin ({origin})")


def _same_host(origin: SplitResult, host: str) -> bool:
    # A proxy may pass the Host without its port (nginx's $host): then the names must
    # match; with a port, the port too. (The CSRF value is the real check; this one
    # stops another site's form before the value is even looked at.)
    name, _, port = host.rpartition(":") if host.rpartition(":")[2].isdigit() else (host, "", "")
    if (origin.hostname or "").lower() != name.strip("[]").lower():
        return False
    if not port:
        return True
    default = {"http": 80, "https": 443}.get(origin.scheme)
    return (origin.port or default) == int(port)


def _secure(request: Request) -> bool:
    """Whether the browser reached us over https: directly, or through a TLS-terminating
    proxy that says so (X-Forwarded-Proto). A forged header can only add ``Secure``."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form POST (capped; no multipart, no files)."""
    body = await read_body(request, FORM_BYTES)
    if not body:
        return {}  # no fields at all (and so no CSRF value: refused by check_form)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise InvalidValueError("the UI takes application/x-www-form-urlencoded forms only")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValueError("the form is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


async def check_form(request: Request, ui: UiSession) -> dict[str, str]:
    """The form's fields, after its Origin and CSRF value are checked (403 otherwise)."""
    _check_origin(request)
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf", ""), ui.csrf):
        raise AccessDeniedError("the form's CSRF token is missing or wrong: reload the page")
    return form


_REASONS = {
    "session": "Log in with a token (none yet, or the last one expired or was refused).",
    "logged-out": "Logged out. The token itself stays valid until it expires.",
}


def _next(target: str | None) -> str:
    # Only a path of the UI itself: never an open redirect to another site.
    if target and target.startswith("/ui") and not target.startswith("/ui//"):
        return target
    return "/ui/"


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The form to paste a token into."""
    params = request.query_params
    reason = _REASONS.get(params.get("reason", ""))
    context = {"next": _next(params.get("next")), "reason": reason}
    return render(request, None, "login.html", context)


@router.post("/login")
async def login(request: Request) -> Response:
    """Verify the pasted token and set the session cookie."""
    _check_origin(request)
    form = await read_form(request)
    token = form.get("token", "").strip()
    target = _next(form.get("next"))
    try:
        grant = _verifier(request).verify(token) if token else None
    except AuthenticationError as exc:
        return render(request, None, "login.html", {"next": target, "reason": str(exc)}, 401)
    if grant is None:
        return render(request, None, "login.html", {"next": target, "reason": "paste a token"}, 401)
    root = request.scope.get("root_path", "")
    response = redirect(request, target)
    response.set_cookie(
        COOKIE, token, path=f"{root}/ui", httponly=True, samesite="strict",
        secure=_secure(request),
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, ui: Session) -> Response:
    """Clear the cookie (the token itself stays valid until it expires)."""
    await check_form(request, ui)
    root = request.scope.get("root_path", "")
    response = redirect(request, "/ui/login", reason="logged-out")
    response.delete_cookie(COOKIE, path=f"{root}/ui", httponly=True, samesite="strict",
                           secure=_secure(request))  # fmt: skip
    return response

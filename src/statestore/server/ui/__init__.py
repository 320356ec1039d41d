"""The web UI at ``/ui``: see, search and safely fix state in a browser.

Server-rendered HTML (Jinja2 templates in ``templates/``, one stylesheet and one small
script in ``static/``, both served from the package): every page works without
JavaScript, and nothing is loaded from anywhere but this server. The UI uses the same
tokens as the API (:mod:`.session`: a pasted token becomes an HttpOnly cookie) and the
same store and validation code as the API's routes, so a page can show or change
exactly what the caller's token could through the API, and nothing else.

**Adding a page** (the overview is one: ``overview.py`` + ``templates/overview.html``):

1. a module here with ``router = APIRouter()`` whose handlers take
   ``ui: UiSession = Depends(session.ui_session)`` (the caller's verified
   :class:`~statestore.wire.Grant` is ``ui.grant``; ``Depends(session.admin_session)``
   refuses non-admin tokens) and answer ``render(request, ui, "page.html", {...})``
   (:func:`.render.render`: security headers, the common context);
2. its template ``{% extends "base.html" %}`` and fills ``{% block title %}`` and
   ``{% block content %}``; a state-changing form is ``method="post"`` and includes
   ``{{ csrf_field() }}``, and its handler calls ``await session.check_form(request, ui)``
   (CSRF token and Origin) before acting, and ``session.refuse_if_read_only(request)``;
3. its module name in :data:`PAGES` below; its nav link in :data:`.render.NAV` (the
   "Overview" slot, ``/ui/overview``, is there already and shows once the page exists).

Paths are relative to the app's root: templates use ``url("/ui/...")``, which prefixes
the root path when the server runs behind a proxy's prefix.
"""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import APIRouter

__all__ = ["PAGES", "UI_PREFIX", "build_router"]

UI_PREFIX = "/ui"

PAGES = ("session", "render", "browse", "keys", "actions", "overview")
"""The modules whose ``router`` serves pages, in order. A listed module that does not
exist yet (the overview, while it is being written) is skipped."""


def build_router() -> APIRouter:
    """Every page's routes under :data:`UI_PREFIX` (left out of the OpenAPI document)."""
    router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
    for name in PAGES:
        module_name = f"{__name__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        page_router = getattr(module, "router", None)
        if page_router is not None:
            router.include_router(page_router)
    return router


def loaded_pages() -> frozenset[str]:
    """The page modules that exist (for the nav: a link shows once its page does)."""
    return frozenset(
        name for name in PAGES if importlib.util.find_spec(f"{__name__}.{name}") is not None
    )

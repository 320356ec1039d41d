"""Browsing: dags -> runs -> task instances -> keys, and assets -> keys."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from statestore.server.ui.render import render
from statestore.server.ui.session import Session

__all__ = ["router"]

router = APIRouter()


@router.get("/")
async def home(request: Request, ui: Session) -> Response:
    """Where a login lands: an admin browses dags, a task token its own grant."""
    return render(request, ui, "home.html", {})

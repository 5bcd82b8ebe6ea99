"""The web page at ``/``: try the oracle by hand."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter()
PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    """The page, with the world served named under its title (no model path shown)."""
    spec = getattr(request.app.state.service, "world_spec", None)
    served = (
        f"World: <b>{html.escape(spec.name)}</b> ({html.escape(spec.description)})"
        if spec is not None
        else "World: your own target and oracle (see /v1/models)"
    )
    text = PAGE.read_text(encoding="utf-8")
    return HTMLResponse(text.replace("<!--served-->", served))

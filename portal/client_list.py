"""The therapist's client list (``/clients``): each client's code, next session, latest rating with
its change, and recent advisory flags. Server-rendered, no script; codes only (no names, in the page
or its URLs); only the signed-in therapist's clients."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from alliance.client_overview import RECENT_SESSIONS, client_lines
from core.accounts import get_therapist
from portal.cookies import SESSION_COOKIE, csrf_token_for
from portal.deps import SettingsDep, SignedInTherapist, StoreDep
from portal.pages import TemplatesDep

router = APIRouter(include_in_schema=False)


@router.get("/clients")
def clients_page(
    request: Request, store: StoreDep, settings: SettingsDep, therapist_id: SignedInTherapist, templates: TemplatesDep
) -> Response:
    zone = ZoneInfo(get_therapist(store, therapist_id).timezone)
    context: dict[str, Any] = {
        "lines": client_lines(store, settings, therapist_id),
        "zone": zone,
        "zone_name": str(zone),
        "recent": RECENT_SESSIONS,
        "csrf_token": csrf_token_for(request.cookies.get(SESSION_COOKIE, "")),
        "signed_in": True,
    }
    return templates.TemplateResponse(request, "clients.html", context)


__all__ = ["router"]

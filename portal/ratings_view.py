"""The therapist's view of a client's alliance ratings: the page ``/clients/{code}/ratings`` (chart,
cutoff, table, advisory flags) and ``GET /api/v1/clients/{code}/ratings``. Another therapist's
client is a 404, exactly like a code that does not exist.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response

from alliance.trends import settings_trend, trend_json
from core.accounts import get_therapist
from core.alerts import ITEM_LABELS, ITEM_NAMES
from core.clients import UnknownClient
from portal.charts import ratings_chart_svg
from portal.cookies import SESSION_COOKIE, csrf_token_for
from portal.deps import CurrentTherapist, SettingsDep, SignedInTherapist, StoreDep
from portal.errors import error_page
from portal.pages import TemplatesDep
from portal.ratings_schemas import ClientRatingsPublic

__all__ = ["router"]

ClientCode = Annotated[str, Path(min_length=1, max_length=40, description="The client's code, e.g. K7Q2.")]

ATTENDANCE_TEXT = {
    "attended": "attended",
    "no_show": "no-show",
    "client_cancelled": "cancelled by the client",
    "client_cancelled_late": "cancelled late by the client",
    "therapist_cancelled": "cancelled",
    "scheduled": "ahead",
}
RATING_TEXT = {
    "completed": "rated",
    "pending": "not yet (the link is still open)",
    "missing": "not rated",
    "declined": "declined",
    "not_requested": "not asked",
}

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["clients"])


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _style_sources(svg: str) -> list[str]:
    """CSP sources for the chart's own styles: its <style> elements and its few ``style`` attributes
    (pygal hides tooltip text with ``opacity: 0``), each by hash; no other inline style is allowed."""
    root = ET.fromstring(svg)
    sources = [_sha256(el.text or "") for el in root.iter("{http://www.w3.org/2000/svg}style")]
    attributes = sorted({value for el in root.iter() if (value := el.get("style")) is not None})
    if attributes:
        sources += ["'unsafe-hashes'", *(_sha256(value) for value in attributes)]
    return sources


def _csp(style_sources: list[str]) -> str:
    styles = " ".join(["'self'", *style_sources])
    return (
        f"default-src 'self'; img-src 'self' data:; style-src {styles}; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    )


@pages.get("/clients/{code}/ratings")
def ratings_page(
    code: ClientCode,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    therapist_id: SignedInTherapist,
    templates: TemplatesDep,
) -> Response:
    try:
        trend = settings_trend(store, settings, therapist_id, code)
    except UnknownClient:
        return error_page(templates, request, 404)
    zone = ZoneInfo(get_therapist(store, therapist_id).timezone)
    svg = ratings_chart_svg(trend.records, trend.thresholds.cutoff, zone=zone)
    secret = request.cookies.get(SESSION_COOKIE, "")
    numbers = {row.record.session_id: row.number for row in trend.rows}
    context: dict[str, Any] = {
        "trend": trend,
        "svg": svg,
        "zone": zone,
        "zone_name": str(zone),
        "numbers": numbers,
        "items": [(name, ITEM_LABELS[name].capitalize()) for name in ITEM_NAMES],
        "attendance_text": ATTENDANCE_TEXT,
        "rating_text": RATING_TEXT,
        "csrf_token": csrf_token_for(secret),
        "signed_in": True,
    }
    response = templates.TemplateResponse(request, "client_ratings.html", context)
    response.headers["content-security-policy"] = _csp(_style_sources(svg))
    return response


@api.get("/clients/{code}/ratings", responses={404: {"description": "No such client of yours"}})
def ratings(
    code: ClientCode, store: StoreDep, settings: SettingsDep, therapist_id: CurrentTherapist
) -> ClientRatingsPublic:
    """A client's alliance ratings over sessions with the advisory flags of rules R1-R8 (thresholds
    from the settings); each flag names the sessions that triggered it."""
    try:
        trend = settings_trend(store, settings, therapist_id, code)
    except UnknownClient:
        raise HTTPException(status_code=404, detail="No such client.") from None
    return ClientRatingsPublic.model_validate(trend_json(trend))


router = APIRouter()
router.include_router(pages)
router.include_router(api)

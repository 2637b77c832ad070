"""The client's pages behind ``/c/{token}``: before the session, and the rating after it.

No account and no cookie but the language choice: the random token in the path is the client's
only credential, which also makes the forms safe from cross-site posting (another site cannot
know the token). Every token that does not open a session (unknown, tampered, expired, revoked,
reassigned) gets the same plain 404 page; repeated failures from one address get 429s.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from alliance.settings import Settings
from core.links import (
    CLIENT_CHECKLIST,
    InvalidCheckin,
    LinkPage,
    LinkPolicy,
    Phase,
    join_open,
    join_opens_at,
    open_link,
    phase,
    record_join,
    save_checkin,
)
from core.ratings import (
    BUILTIN_MEASURE,
    ITEMS,
    LICENSED_MEASURE,
    InvalidRating,
    decline_rating,
    licensed_measure,
    submit_rating,
)
from core.store import Store
from portal.client_i18n import LANG_COOKIE, LANGUAGES, Gettext, choose_language, format_when, gettext_for
from portal.deps import SettingsDep, StoreDep
from portal.errors import problem

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

FormField = Annotated[str | None, Form()]
PING_BYTES = 64 * 1024
_PING_BODY = bytes(range(256)) * (PING_BYTES // 256)

# Built-in wording of the four items: prompt, low and high anchor. Deliberately our own (after the
# neutral prompts in the shared clinical reference, section A), not a paraphrase of the licensed SRS
# text: a practice with a licence loads that with `alliance measures load --attest-license`.
BUILTIN_ITEMS: dict[str, tuple[str, str, str]] = {
    "bond": (
        "How connected to and respected by your therapist did you feel today?",
        "Not at all",
        "Completely",
    ),
    "goals": (
        "How much did today's session centre on what matters most to you?",
        "Not at all",
        "Completely",
    ),
    "approach": (
        "How well did today's way of working suit you?",
        "Not at all",
        "Completely",
    ),
    "overall": (
        "All things considered, how helpful was today's session for you?",
        "Not at all",
        "Completely",
    ),
}

# Client pre-session checklist (shared reference, section D, C1-C8), in our own words.
CHECKLIST_TEXT: dict[str, str] = {
    "C1": "I am in a private spot where nobody can overhear me, with headphones.",
    "C2": "I am not driving or doing anything else during the session.",
    "C3": "My device is charged and my internet connection is stable (not public Wi-Fi).",
    "C4": "Notifications are silenced and other apps are closed.",
    "C5": "My camera shows my face, with the light in front of me.",
    "C6": "My phone is nearby: if the video drops, my therapist will call me.",
    "C7": "I will not record the session.",
    "C8": "If I am somewhere other than usual today, I will say so at the start.",
}
if set(CHECKLIST_TEXT) != set(CLIENT_CHECKLIST):  # pragma: no cover - a guard for editors
    raise ImportError("portal.client_pages: checklist texts and core.links.CLIENT_CHECKLIST differ")


class _FailureLimiter:
    """Failed token look-ups per client address, in a moving window (per process)."""

    def __init__(self, per_minute: int) -> None:
        self._limit = parse(f"{per_minute}/minute")
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def blocked(self, address: str) -> bool:
        return not self._limiter.test(self._limit, address)

    def failed(self, address: str) -> None:
        self._limiter.hit(self._limit, address)


def _limiter(request: Request) -> _FailureLimiter:
    state = request.app.state
    limiter: _FailureLimiter | None = getattr(state, "client_link_limiter", None)
    if limiter is None:
        settings: Settings = state.settings
        limiter = state.client_link_limiter = _FailureLimiter(settings.link_failures_per_minute)
    return limiter


def policy_of(settings: Settings) -> LinkPolicy:
    return LinkPolicy(
        valid_days=settings.link_valid_days,
        join_opens_minutes=settings.join_opens_minutes,
        rating_delay_minutes=settings.rating_delay_minutes,
        min_call_minutes=settings.rating_min_call_minutes,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class _View:
    """Per-request rendering: language, translations, templates."""

    def __init__(self, request: Request) -> None:
        self.request = request
        query_lang = request.query_params.get("lang")
        self.lang = choose_language(
            query_lang, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
        )
        self.remember = query_lang in LANGUAGES
        self._: Gettext = gettext_for(self.lang)
        self.templates: Jinja2Templates = request.app.state.templates

    def prefer(self, language: str | None) -> None:
        """Use the client's stored language unless ``?lang=`` or the cookie chose one."""
        request = self.request
        chosen = choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
            language,
        )
        if chosen != self.lang:
            self.lang = chosen
            self._ = gettext_for(chosen)

    def render(self, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
        full = {"_": self._, "lang": self.lang, **context}
        response = self.templates.TemplateResponse(self.request, f"client/{name}", full, status_code=status_code)
        if self.remember:
            settings: Settings = self.request.app.state.settings
            response.set_cookie(
                LANG_COOKIE,
                self.lang,
                max_age=365 * 24 * 3600,
                path="/c/",
                httponly=True,
                samesite="lax",
                secure=settings.env != "development",
            )
        return response

    def message(self, title: str, lines: list[str], status_code: int = 200, contact: str | None = None) -> Response:
        return self.render("message.html", {"title": title, "lines": lines, "contact": contact}, status_code)

    def not_found(self) -> Response:
        # The same page for every kind of bad token: no hint which it was.
        _ = self._
        return self.message(
            _("Link not found"),
            [_("This link does not work. It may be mistyped, or no longer valid.")],
            status_code=404,
        )


def _resolve(request: Request, store: Store, settings: Settings, token: str) -> tuple[_View, LinkPage | Response]:
    view = _View(request)
    address = request.client.host if request.client else "unknown"
    limiter = _limiter(request)
    if limiter.blocked(address):
        _ = view._
        response = view.message(_("Too many attempts"), [_("Please wait a minute and try again.")], 429)
        response.headers["Retry-After"] = "60"
        return view, response
    page = open_link(store, token, policy=policy_of(settings), now=_now())
    if page is None:
        limiter.failed(address)
        return view, view.not_found()
    view.prefer(page.client_language)
    return view, page


def _zone(page: LinkPage, settings: Settings) -> tuple[str, bool]:
    """(zone to render in, whether it is the client's own); else the browser's zone via JS."""
    if page.client_timezone:
        return page.client_timezone, True
    return page.event_timezone or settings.timezone, False


def _phase(page: LinkPage, settings: Settings, now: datetime) -> Phase:
    return phase(
        cancelled=page.cancelled,
        rated=page.rated,
        end=page.end,
        call=page.call,
        policy=policy_of(settings),
        now=now,
        declined=page.declined,
    )


def _items(store: Store, view: _View) -> tuple[str, dict[str, tuple[str, str, str]], str | None, str]:
    """(form title, item texts, copyright line, measure code) in the viewer's language."""
    _ = view._
    licensed = licensed_measure(store)
    if licensed is not None:
        texts = licensed.items_for(view.lang) or next(iter(licensed.locales.values()))
        items = {key: (t.prompt, t.low, t.high) for key, t in texts.items()}
        return licensed.name, items, licensed.copyright_line, LICENSED_MEASURE
    items = {key: (_(p), _(lo), _(hi)) for key, (p, lo, hi) in BUILTIN_ITEMS.items()}
    return _("How was today's session?"), items, None, BUILTIN_MEASURE


def _before(
    view: _View,
    store: Store,
    settings: Settings,
    token: str,
    page: LinkPage,
    *,
    saved: bool = False,
    error: str | None = None,
    status_code: int = 200,
    field: str | None = None,
) -> Response:
    now = _now()
    zone, own_zone = _zone(page, settings)
    date_text, time_text, zone_label = format_when(page.start, zone, view.lang)
    opens = join_opens_at(page.start, policy_of(settings))
    _d, opens_text, _z = format_when(opens, zone, view.lang)
    context = {
        "token": token,
        "start_iso": page.start.isoformat(),
        "end_iso": page.end.isoformat(),
        "opens_iso": opens.isoformat(),
        "date_text": date_text,
        "time_text": time_text,
        "opens_text": opens_text,
        "zone_label": zone_label,
        "own_zone": own_zone,
        "in_person": page.in_person,
        "has_video": page.video_url is not None,
        "join_open": page.video_url is not None
        and join_open(start=page.start, end=page.end, policy=policy_of(settings), now=now),
        "join_minutes": settings.join_opens_minutes,
        "checklist": [(key, view._(text)) for key, text in CHECKLIST_TEXT.items()],
        "checked": set(page.checked),
        "saved": saved,
        "error": error,
        "error_field": field,
    }
    return view.render("before.html", context, status_code)


def _rating_form(
    view: _View,
    store: Store,
    token: str,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
    error_field: str | None = None,
) -> Response:
    title, items, copyright_line, _code = _items(store, view)
    context = {
        "token": token,
        "title": title,
        "items": [(key, *items[key]) for key in ITEMS],
        "values": values or {},
        "copyright_line": copyright_line,
        "error": error,
        "error_field": error_field,
    }
    return view.render("rating.html", context, status_code)


def _received(view: _View) -> Response:
    _ = view._
    return view.message(
        _("Thank you"),
        [_("Your answers were received. Your therapist will see them before your next session.")],
    )


def _declined(view: _View) -> Response:
    _ = view._
    return view.message(_("Thank you"), [_("You chose not to answer the questions this time. That is fine.")])


def _after_phase(view: _View, store: Store, settings: Settings, token: str, page: LinkPage) -> Response:
    """The page for every phase but BEFORE."""
    _ = view._
    current = _phase(page, settings, _now())
    if current is Phase.CANCELLED:
        return view.message(
            _("This session was cancelled"),
            [_("There is nothing to do here. If you have questions, please contact your therapist.")],
            contact=page.contact_line,
        )
    if current is Phase.RATED:
        return _received(view)
    if current is Phase.DECLINED:
        return _declined(view)
    if current is Phase.NO_RATING:
        return view.message(_("This session is over"), [_("There is nothing to do here.")], contact=page.contact_line)
    return _rating_form(view, store, token)


@router.get("/c/{token}")
def client_page(token: str, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """The client's page, in one thread-pool hop (its dependencies are ``async``: no hop of their own).

    Measured both ways under 200 paced clients on two shared cores (benchmarks/README.md, client
    pages): run on the event loop (no hop) a page costs ~15% less CPU, yet its p50 and p99 were
    worse whenever other processes competed for the cores, because one event-loop thread gets a
    smaller share of a busy machine than the pool; so the page stays a plain ``def``.
    """
    view, resolved = _resolve(request, store, settings, token)
    if isinstance(resolved, Response):
        return resolved
    page = resolved
    if _phase(page, settings, _now()) is Phase.BEFORE:
        return _before(view, store, settings, token, page, saved=request.query_params.get("saved") == "1")
    return _after_phase(view, store, settings, token, page)


@router.get("/c/{token}/join")
def join(token: str, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Record the press and send the browser to the video link (a GET, so a plain link works)."""
    _view, resolved = _resolve(request, store, settings, token)
    if isinstance(resolved, Response):
        return resolved
    page = resolved
    now = _now()
    if (
        page.video_url is None
        or page.in_person
        or page.cancelled
        or not join_open(start=page.start, end=page.end, policy=policy_of(settings), now=now)
    ):
        return RedirectResponse(f"/c/{token}", status_code=303)
    record_join(store, page.session_id, now=now)
    return RedirectResponse(page.video_url, status_code=303)


@router.post("/c/{token}/checkin")
def checkin(
    token: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    checked: Annotated[list[str] | None, Form()] = None,
    location: FormField = None,
    callback: FormField = None,
) -> Response:
    view, resolved = _resolve(request, store, settings, token)
    if isinstance(resolved, Response):
        return resolved
    page = resolved
    if _phase(page, settings, _now()) is not Phase.BEFORE:
        return RedirectResponse(f"/c/{token}", status_code=303)
    try:
        save_checkin(store, page, checked=checked or [], location=location, callback=callback, now=_now())
    except InvalidCheckin as exc:
        _ = view._
        messages = {
            "location": _("The place is too long."),
            "callback": _("The phone number may hold digits, spaces and + ( ) . / - only."),
            "checked": _("Unknown checklist item."),
        }
        # The page again with the field's problem named; 422 like every other invalid form.
        return _before(
            view,
            store,
            settings,
            token,
            page,
            error=messages.get(exc.field, str(exc)),
            status_code=422,
            field=exc.field,
        )
    return RedirectResponse(f"/c/{token}?saved=1#checklist", status_code=303)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" not in accept and "application/json" in accept


@router.post("/c/{token}/rating")
def rate(
    token: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    bond: FormField = None,
    goals: FormField = None,
    approach: FormField = None,
    overall: FormField = None,
    comment: FormField = None,
) -> Response:
    view, resolved = _resolve(request, store, settings, token)
    if isinstance(resolved, Response):
        return resolved
    page = resolved
    _ = view._
    current = _phase(page, settings, _now())
    if current is Phase.RATED:
        return _received(view)  # the first rating stands
    if current is Phase.DECLINED:
        return _declined(view)
    if current is Phase.BEFORE:
        return view.message(
            _("Not yet"),
            [_("The questions open after your session has ended. Please come back to this link then.")],
            status_code=409,
        )
    if current is not Phase.RATING:
        return _after_phase(view, store, settings, token, page)
    values = {"bond": bond, "goals": goals, "approach": approach, "overall": overall}
    _title, _items_text, _copyright, measure = _items(store, view)
    try:
        _record, _created = submit_rating(
            store, page.session_id, page.client_id, values, comment, measure=measure, now=_now()
        )
    except InvalidRating as exc:
        if _wants_json(request):
            return problem(
                422,
                f"Invalid request: {exc.field}.",
                errors=[{"name": exc.field, "location": "body", "message": str(exc)}],
            )
        if exc.field == "comment":
            message = _("The comment is too long.")
        else:
            label = _field_label(store, view, exc.field)
            message = _("Please give “%(item)s” a number from 0 to 10 with at most one decimal.") % {"item": label}
        kept = {k: v for k, v in values.items() if v is not None}
        return _rating_form(view, store, token, kept, message, status_code=422, error_field=exc.field)
    return RedirectResponse(f"/c/{token}", status_code=303)


@router.post("/c/{token}/decline")
def decline(token: str, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Record "I'd rather not answer" once (alert rule R6 reads it); then the page says so."""
    view, resolved = _resolve(request, store, settings, token)
    if isinstance(resolved, Response):
        return resolved
    page = resolved
    current = _phase(page, settings, _now())
    if current is Phase.BEFORE:
        _ = view._
        return view.message(
            _("Not yet"),
            [_("The questions open after your session has ended. Please come back to this link then.")],
            status_code=409,
        )
    if current is Phase.RATING:
        decline_rating(store, page.session_id, page.client_id, now=_now())
    return RedirectResponse(f"/c/{token}", status_code=303)


def _field_label(store: Store, view: _View, field: str) -> str:
    _title, items, _c, _m = _items(store, view)
    return items[field][0] if field in items else field


@router.get("/c/{token}/ping")
def ping(token: str, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """The device check's connection test: an empty answer (round trip) or 64 KB (``?size=64k``)."""
    _view, resolved = _resolve(request, store, settings, token)
    if isinstance(resolved, Response):
        return resolved
    body = _PING_BODY if request.query_params.get("size") == "64k" else b""
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


__all__ = ["BUILTIN_ITEMS", "CHECKLIST_TEXT", "policy_of", "router"]

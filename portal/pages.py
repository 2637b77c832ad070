"""Server-rendered therapist pages: sign in, password setup, sign out, the overview."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from core.accounts import (
    SESSION_TTL,
    AccountError,
    InvalidCredentials,
    InvalidLink,
    RateLimited,
    WeakPassword,
    authenticate,
    end_session,
    get_therapist,
    resolve_session,
    setup_token_therapist,
    start_session,
    use_setup_token,
)
from core.mirror import list_connections
from portal.cookies import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    clear_cookie,
    csrf_token_for,
    presession_secret,
    set_cookie,
)
from portal.deps import SettingsDep, SignedInTherapist, StoreDep
from portal.errors import error_page

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

router = APIRouter(include_in_schema=False)

FormField = Annotated[str | None, Form()]


def build_templates() -> Jinja2Templates:
    """The page templates (autoescaped), compiled once.

    They ship with the code, so Jinja2's default check of every template file's mtime on each
    render (``auto_reload``) only costs: a restart picks up an edited template.
    """
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.auto_reload = False
    return templates


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


def _safe_next(value: str | None) -> str:
    """Only same-site paths: ``//evil.example`` or ``https://...`` would be an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _presession_page(
    request: Request,
    templates: Jinja2Templates,
    settings: SettingsDep,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """A form shown before sign-in; its CSRF token is bound to the pre-session cookie."""
    secret, new = presession_secret(request)
    response = templates.TemplateResponse(
        request, name, {**context, "csrf_token": csrf_token_for(secret)}, status_code=status_code, headers=headers
    )
    if new:
        set_cookie(response, settings, PRESESSION_COOKIE, secret)
    return response


@router.get("/login")
def login_form(
    request: Request, store: StoreDep, settings: SettingsDep, templates: TemplatesDep, next: str | None = None
) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and resolve_session(store, secret) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    notice = "Your password is set. Sign in with it." if request.query_params.get("setup") == "done" else None
    return _presession_page(request, templates, settings, "login.html", {"next": _safe_next(next), "notice": notice})


@router.post("/login")
def login(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    email: FormField = None,
    password: FormField = None,
    csrf_token: FormField = None,
    next: FormField = None,
) -> Response:
    check_csrf(request.cookies.get(PRESESSION_COOKIE), csrf_token)
    target = _safe_next(next)
    try:
        therapist_id = authenticate(
            store, email or "", password or "", _client_address(request), policy=request.app.state.login_policy
        )
    except RateLimited as exc:
        minutes = max(1, round(exc.retry_after / 60))
        return _presession_page(
            request,
            templates,
            settings,
            "login.html",
            {"next": target, "error": f"Too many failed sign-ins. Try again in about {minutes} minute(s)."},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    except InvalidCredentials:
        return _presession_page(
            request,
            templates,
            settings,
            "login.html",
            {"next": target, "error": "Wrong e-mail address or password."},
            status_code=400,
        )
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, settings, SESSION_COOKIE, start_session(store, therapist_id), int(SESSION_TTL.total_seconds()))
    clear_cookie(response, settings, PRESESSION_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, store: StoreDep, settings: SettingsDep, csrf_token: FormField = None) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    check_csrf(secret, csrf_token)
    if secret:
        end_session(store, secret)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, settings, SESSION_COOKIE)
    return response


@router.get("/setup-password/{token}")
def setup_form(
    token: str, request: Request, store: StoreDep, settings: SettingsDep, templates: TemplatesDep
) -> Response:
    try:
        setup_token_therapist(store, token)
    except InvalidLink:
        return error_page(templates, request, 404)
    return _presession_page(request, templates, settings, "setup_password.html", {})


@router.post("/setup-password/{token}")
def setup_password(
    token: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    password: FormField = None,
    confirm: FormField = None,
    csrf_token: FormField = None,
) -> Response:
    check_csrf(request.cookies.get(PRESESSION_COOKIE), csrf_token)

    def again(message: str) -> Response:
        return _presession_page(request, templates, settings, "setup_password.html", {"error": message}, 400)

    if (password or "") != (confirm or ""):
        return again("The two passwords differ.")
    try:
        use_setup_token(store, token, password or "")
    except WeakPassword as exc:
        return again(str(exc).capitalize() + ".")
    except InvalidLink:
        return error_page(templates, request, 404)
    return RedirectResponse("/login?setup=done", status_code=303)


@router.get("/")
def home(request: Request, store: StoreDep, therapist_id: SignedInTherapist, templates: TemplatesDep) -> Response:
    try:
        therapist = get_therapist(store, therapist_id)
    except AccountError:
        raise HTTPException(status_code=401) from None
    connections = list_connections(store, therapist_id, with_settings=False)  # a page never shows them
    secret = request.cookies.get(SESSION_COOKIE, "")
    return templates.TemplateResponse(
        request,
        "home.html",
        {"therapist": therapist, "connections": connections, "csrf_token": csrf_token_for(secret), "signed_in": True},
    )

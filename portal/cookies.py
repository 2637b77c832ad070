"""Cookies of the therapist pages and the CSRF tokens bound to them.

CSRF uses synchronizer tokens derived from a cookie the attacker cannot read: the session secret
once signed in, a random pre-session cookie on the login and password-setup forms. The token is an
HMAC of that secret, so nothing extra is stored and a token from one browser is useless in another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request, Response

from alliance.settings import Settings

SESSION_COOKIE = "alliance_session"
PRESESSION_COOKIE = "alliance_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def csrf_token_for(secret: str) -> str:
    """The CSRF token that goes with a session (or pre-session) secret."""
    mac = hmac.new(secret.encode(), b"alliance csrf v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def check_csrf(secret: str | None, submitted: str | None) -> None:
    """403 unless ``submitted`` is the token of ``secret``."""
    if not secret or not submitted or not hmac.compare_digest(csrf_token_for(secret), submitted):
        raise HTTPException(status_code=403, detail="Missing or invalid CSRF token.")


def set_cookie(response: Response, settings: Settings, name: str, value: str, max_age: int | None = None) -> None:
    """HttpOnly, SameSite=Lax, and Secure everywhere but development (which runs on plain http)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.env != "development",
    )


def clear_cookie(response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=settings.env != "development")


def presession_secret(request: Request) -> tuple[str, bool]:
    """The browser's pre-session secret and whether it is new (then the caller sets the cookie)."""
    existing = request.cookies.get(PRESESSION_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return secrets.token_urlsafe(32), True

"""FastAPI dependencies for every router: the store, the settings, the signed-in therapist.

Use them as annotations (STYLE 9)::

    @router.get("/api/v1/things")
    def things(store: StoreDep, therapist_id: CurrentTherapist) -> list[ThingPublic]:
        return [... core.things.list_things(store, therapist_id) ...]   # always scoped by therapist_id

- ``StoreDep`` / ``SettingsDep``: the app's ``Store`` and ``Settings`` (set by ``create_app``; no globals).
- ``CurrentTherapist``: the therapist id for JSON API routes. A bearer token
  (``Authorization: Bearer alliance_...``) wins; without one the browser's session cookie is accepted,
  and then unsafe methods (POST, PUT, PATCH, DELETE) also need the ``X-CSRF-Token`` header.
  Anything else is a 401 problem.
- ``SignedInTherapist``: the same for HTML pages, but a browser without a session is redirected
  to ``/login`` instead of getting a 401.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from alliance.settings import Settings
from core.accounts import resolve_api_token, resolve_session
from core.store import Store
from portal.cookies import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, check_csrf
from portal.errors import LoginRequired
from portal.token_cache import TokenCache, token_key

__all__ = [
    "CurrentTherapist",
    "SettingsDep",
    "SignedInTherapist",
    "StoreDep",
    "current_therapist",
    "get_settings",
    "get_store",
    "signed_in_therapist",
]


# ``async def`` although nothing is awaited: FastAPI runs a plain ``def`` dependency in its thread
# pool, and a hop there for a getattr costs more than the whole lookup.
async def get_store(request: Request) -> Store:
    """The store the app was created with."""
    store: Store = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

# auto_error=False: a missing header falls through to the session cookie, and we answer 401 (not 403).
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="A personal API token from `alliance tokens create`.",
)


def _unauthorized() -> HTTPException:
    return HTTPException(status_code=401, detail="Missing, invalid or revoked credentials.")


async def current_therapist(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """Resolve a bearer token or the session cookie to a therapist id; 401 otherwise."""
    # The store straight from the app, not through StoreDep: every sub-dependency costs FastAPI
    # a resolution per request, and this one runs on every API request.
    store: Store = request.app.state.store
    # ``async def`` with the database reads sent to the thread pool only when needed: a token
    # verified seconds ago (portal/token_cache.py) costs neither a read nor a thread hop.
    authorization = request.headers.get("authorization")
    if authorization is not None:
        # Any Authorization header must be a valid bearer token; a bad one never falls back to the cookie.
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise _unauthorized()
        token = token.strip()
        cache: TokenCache = request.app.state.token_cache
        key = token_key(token)
        therapist_id = cache.get(key)
        if therapist_id is None:
            therapist_id = await run_in_threadpool(resolve_api_token, store, token)
            if therapist_id is None:
                raise _unauthorized()
            cache.put(key, therapist_id)
        return therapist_id
    secret = request.cookies.get(SESSION_COOKIE)
    therapist_id = await run_in_threadpool(resolve_session, store, secret) if secret else None
    if therapist_id is None:
        raise _unauthorized()
    if request.method not in SAFE_METHODS:
        # A cookie rides along on cross-site requests; a header the other site cannot read does not.
        check_csrf(secret, request.headers.get(CSRF_HEADER))
    return therapist_id


def signed_in_therapist(request: Request, store: StoreDep) -> int:
    """The therapist of the browser's session; otherwise redirect to /login (via ``LoginRequired``)."""
    secret = request.cookies.get(SESSION_COOKIE)
    therapist_id = resolve_session(store, secret) if secret else None
    if therapist_id is None:
        raise LoginRequired(request.url.path)
    return therapist_id


CurrentTherapist = Annotated[int, Depends(current_therapist)]
SignedInTherapist = Annotated[int, Depends(signed_in_therapist)]

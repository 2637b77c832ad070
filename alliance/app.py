"""The FastAPI application factory (no module-level app, engine or settings)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from alliance.keys import open_store
from alliance.settings import Settings
from alliance.worker import BackgroundWorker
from core.accounts import LoginPolicy
from core.store import Store, pending_migrations
from portal import api as api_routes
from portal import api_checklists as checklists_api
from portal import api_clients, api_mirror, api_video, client_pages, connect_google, connect_zoom, pages
from portal import checklist_pages as checklists_pages
from portal import connect_outlook as outlook_connect_pages  # /connect/outlook (MSAL code flow)
from portal import ratings_view as ratings_pages
from portal.api_attendance import router as attendance_api_router  # who cancelled, R8 (issue 7)
from portal.api_notes import router as notes_api_router  # session notes (notes issue)
from portal.api_sync_health import router as sync_health_router  # per-connection sync health (issue 9)
from portal.cancellation_pages import router as cancellation_pages_router  # who cancelled (issue 7)
from portal.client_list import router as client_list_router  # the therapist's client list (issue 7)
from portal.deps import StoreDep
from portal.errors import document_problems, install_error_handlers
from portal.listing_cache import ListingCache
from portal.middleware import MAX_BODY_BYTES, BodySizeLimit, RequestLog, SecurityHeaders
from portal.pages_notes import router as notes_pages_router  # session notes (notes issue)
from portal.schemas import Readiness
from portal.token_cache import TokenCache
from webhooks.google import GoogleWebhook  # POST /webhooks/google, the same way (pushes are the commonest requests)
from webhooks.router import router as webhooks_router
from webhooks.zoom import ZoomWebhook  # POST /webhooks/zoom, ahead of the routing table (issue 6)

logger = logging.getLogger(__name__)

__all__ = ["create_app"]


def _readiness(store: Store, worker: BackgroundWorker | None) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not reachable"; the type is enough
        logger.warning("readiness: database unreachable (%s)", type(exc).__name__)
        checks["database"] = "unreachable"
    if checks["database"] == "ok":
        try:
            checks["migrations"] = "pending" if pending_migrations(store.engine) else "ok"
        except Exception as exc:
            logger.warning("readiness: migration check failed (%s)", type(exc).__name__)
            checks["migrations"] = "unknown"
    else:
        checks["migrations"] = "unknown"
    # A web-only process (scale-out: workers run elsewhere) has no embedded worker to check.
    if worker is not None:
        checks["worker"] = "ok" if worker.is_alive() else "not running"
    return checks


def create_app(settings: Settings, *, store: Store | None = None, worker: BackgroundWorker | None = None) -> FastAPI:
    """Build the web app on ``store`` (opened from ``settings`` when not given; then the app closes it).

    ``worker`` is the embedded worker ``alliance serve`` runs; ``/readyz`` reports whether it is alive.
    The app never starts or stops it.
    """
    owns_store = store is None
    app_store = store if store is not None else open_store(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_store:
            app_store.close()

    app = FastAPI(
        title="Alliance",
        version="0.1.0",
        description="Calendar and video integration for psychotherapists.",
        lifespan=lifespan,
        # The interactive docs pages load scripts from a CDN; the schema itself is at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = app_store
    app.state.worker = worker
    app.state.templates = pages.build_templates()
    app.state.login_policy = LoginPolicy()
    app.state.listing_cache = ListingCache(settings.api_cache_mb * 1024 * 1024)
    app.state.token_cache = TokenCache(settings.api_token_cache_seconds)

    install_error_handlers(app)
    # Added innermost first: SecurityHeaders wraps RequestLog (so even its 500s get the headers),
    # which wraps the body limit, which wraps the Zoom and Google webhooks (answered before any
    # route is looked up).
    app.add_middleware(GoogleWebhook)
    app.add_middleware(ZoomWebhook)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestLog)
    app.add_middleware(SecurityHeaders, production=settings.env != "development")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: 200 while the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=Readiness, responses={503: {"model": Readiness}})
    def readyz(store: StoreDep) -> Any:
        """Readiness: database reachable, migrations current, embedded worker alive; else 503."""
        checks = _readiness(store, worker)
        ready = all(value == "ok" for value in checks.values())
        body = Readiness(status="ready" if ready else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    # First: routes are tried in order. Provider pushes are the most frequent requests of all (a
    # storm of them is what a busy practice network sends, benchmarks/README.md, scale-out), then
    # the client pages (one load per client per page view); no other route starts with /webhooks/
    # or /c/.
    app.include_router(webhooks_router, prefix="/webhooks")
    app.include_router(client_pages.router)
    app.include_router(api_routes.router)
    app.include_router(api_mirror.router)
    app.include_router(sync_health_router)
    app.include_router(api_clients.router)
    app.include_router(notes_api_router)
    app.include_router(notes_pages_router)
    app.include_router(checklists_api.router)
    app.include_router(checklists_pages.router)
    app.include_router(ratings_pages.router)
    app.include_router(client_list_router)
    app.include_router(attendance_api_router)
    app.include_router(cancellation_pages_router)
    app.include_router(pages.router)
    app.include_router(connect_zoom.router)
    app.include_router(api_video.router)
    app.include_router(connect_google.router)
    app.include_router(outlook_connect_pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = document_problems(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    return app

"""Microsoft Graph v1.0 routes of the primary calendar.

- ``GET /v1.0/me/calendarView/delta``: ``startDateTime``/``endDateTime`` on the first request
  only; then opaque ``$skiptoken`` (``@odata.nextLink``) and ``$deltatoken``
  (``@odata.deltaLink``) URLs. Occurrences are skeletal; removed instances are
  ``{"id", "@removed": {"reason": "deleted"}}``; an unknown token is 410 ``SyncStateNotFound``.
- ``/v1.0/me/events`` (POST, GET list) and ``/v1.0/me/events/{id}`` (GET, PATCH, DELETE) with
  ``changeKey`` / ``@odata.etag`` and ``If-Match`` (412 on a stale one).
- ``Prefer`` headers (repeated or comma-separated): ``odata.maxpagesize``, ``outlook.timezone``,
  ``outlook.body-content-type`` (bodies in HTML unless ``text`` is preferred, sandbox/outlook/bodies.py)
  and ``IdType="ImmutableId"`` (without it, default ids that change when an item moves).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.outlook.bodies import present
from sandbox.outlook.events import BadRecurrence, Instance, instance_at, master_view
from sandbox.outlook.push import EVENT_RESOURCES, validate_url
from sandbox.outlook.state import GraphError, OutlookState
from sandbox.outlook.times import BadTime, zone

_PREFERENCE = re.compile(r'([A-Za-z][\w.\-]*)\s*=\s*(?:"([^"]*)"|([^,;\s]*))')


def parse_prefer(values: Iterable[str]) -> dict[str, str]:
    """Every ``name=value`` preference from all ``Prefer`` headers (names case-insensitive)."""
    found: dict[str, str] = {}
    for value in values:
        for name, quoted, bare in _PREFERENCE.findall(value):
            found[name.lower()] = quoted if quoted else bare
    return found


def _window_bound(text: str | None, name: str) -> datetime:
    if not text:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            f"This request requires a time window specified by the query string parameters StartDateTime "
            f"and EndDateTime. Missing: {name}.",
        )
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "ErrorInvalidParameter", f"The value of {name} is not a valid date-time.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def graph_router(state: OutlookState) -> APIRouter:
    router = APIRouter(prefix="/v1.0")

    def prefs(request: Request) -> tuple[dict[str, str], str, bool]:
        found = parse_prefer(request.headers.getlist("prefer"))
        time_zone = found.get("outlook.timezone") or "UTC"
        try:
            zone(time_zone)
        except BadTime:
            time_zone = "UTC"  # an unknown zone in a preference is ignored, not an error
        return found, time_zone, found.get("idtype", "").lower() == "immutableid"

    def page_size(found: dict[str, str]) -> int:
        try:
            size = int(found.get("odata.maxpagesize", state.settings.default_page_size))
        except ValueError:
            size = state.settings.default_page_size
        return max(1, min(size, state.settings.max_page_size))

    def with_body(view: dict[str, Any], found: dict[str, str]) -> dict[str, Any]:
        body = view.get("body")
        if isinstance(body, dict):
            preferred = found.get("outlook.body-content-type")
            view["body"] = present(str(body["contentType"]), str(body["content"]), preferred)
        return view

    def body_applied(found: dict[str, str]) -> list[str]:
        preferred = found.get("outlook.body-content-type", "").lower()
        return [f'outlook.body-content-type="{preferred}"'] if preferred in ("text", "html") else []

    def render_item(
        item: Instance | tuple[str, str], time_zone: str, immutable: bool, found: dict[str, str]
    ) -> dict[str, Any]:
        if isinstance(item, tuple):
            return {
                "@odata.type": "#microsoft.graph.event",
                "id": item[0] if immutable else item[1],
                "@removed": {"reason": "deleted"},
            }
        return with_body(item.render(time_zone, immutable=immutable, skeletal=item.type == "occurrence"), found)

    async def delta(request: Request) -> Response:
        state.authorize(request.headers.get("authorization"))
        found, time_zone, immutable = prefs(request)
        q = request.query_params
        size = page_size(found)
        if "$skiptoken" in q:
            skip = q["$skiptoken"]
        elif "$deltatoken" in q:
            previous = state.delta_state(q["$deltatoken"])
            skip = state.start_round(previous.window, previous, size)
        else:
            start = _window_bound(q.get("startDateTime") or q.get("StartDateTime"), "startDateTime")
            end = _window_bound(q.get("endDateTime") or q.get("EndDateTime"), "endDateTime")
            if end <= start:
                raise GraphError(400, "ErrorInvalidParameter", "endDateTime must be after startDateTime.")
            skip = state.start_round((start, end), None, size)
        items, following, delta_token = state.next_page(skip)
        base = f"{state.base_url}/v1.0/me/calendarView/delta"
        body: dict[str, Any] = {
            "@odata.context": f"{state.base_url}/v1.0/$metadata#Collection(event)",
            "value": [render_item(i, time_zone, immutable, found) for i in items],
        }
        if following:
            body["@odata.nextLink"] = f"{base}?$skiptoken={following}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={delta_token}"
        applied = [f"odata.maxpagesize={size}"] if "odata.maxpagesize" in found else []
        if "outlook.timezone" in found:
            applied.append(f'outlook.timezone="{time_zone}"')
        applied.extend(body_applied(found))
        headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
        return JSONResponse(body, headers=headers)

    router.add_api_route("/me/calendarView/delta", delta, methods=["GET"])
    router.add_api_route("/me/calendarview/delta", delta, methods=["GET"], include_in_schema=False)

    def view_of(any_id: str, time_zone: str, immutable: bool) -> dict[str, Any]:
        event, original = state.resolve(any_id)
        if original is None:
            view = master_view(event, time_zone, immutable=immutable)
            return view
        with state.lock:
            instance = instance_at(event, original)
        if instance is not None:
            return instance.render(time_zone, immutable=immutable, skeletal=False)
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def answer(body: dict[str, Any], found: dict[str, str], status_code: int = 200) -> JSONResponse:
        applied = body_applied(found)
        headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
        return JSONResponse(body, status_code=status_code, headers=headers)

    @router.get("/me/events/{event_id}")
    def get_event(request: Request, event_id: str) -> JSONResponse:
        state.authorize(request.headers.get("authorization"))
        found, time_zone, immutable = prefs(request)
        return answer(with_body(view_of(event_id, time_zone, immutable), found), found)

    @router.get("/me/events")
    def list_events(request: Request) -> JSONResponse:
        state.authorize(request.headers.get("authorization"))
        found, time_zone, immutable = prefs(request)
        with state.lock:
            views = [with_body(master_view(e, time_zone, immutable=immutable), found) for e in state.events.values()]
        return answer({"@odata.context": f"{state.base_url}/v1.0/$metadata#users('me')/events", "value": views}, found)

    async def _json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
        return body

    @router.post("/me/events", status_code=201)
    async def create_event(request: Request) -> JSONResponse:
        state.authorize(request.headers.get("authorization"), write=True)
        found, time_zone, immutable = prefs(request)
        body = await _json_body(request)
        body.pop("iCalUId", None)  # read-only through the API
        created = _guard(lambda: state.seed_event(body))
        return answer(with_body(view_of(created["id"], time_zone, immutable), found), found, status_code=201)

    @router.patch("/me/events/{event_id}")
    async def patch_event(request: Request, event_id: str) -> JSONResponse:
        state.authorize(request.headers.get("authorization"), write=True)
        found, time_zone, immutable = prefs(request)
        body = await _json_body(request)
        _guard(lambda: state.update_event(event_id, body, request.headers.get("if-match")))
        return answer(with_body(view_of(event_id, time_zone, immutable), found), found)

    @router.delete("/me/events/{event_id}", status_code=204)
    def delete_event(request: Request, event_id: str) -> Response:
        state.authorize(request.headers.get("authorization"), write=True)
        state.delete_event(event_id, request.headers.get("if-match"))
        return Response(status_code=204)

    @router.post("/subscriptions", status_code=201)
    async def create_subscription(request: Request) -> JSONResponse:
        state.authorize(request.headers.get("authorization"))
        body = await _json_body(request)
        missing = [k for k in ("changeType", "notificationUrl", "resource", "expirationDateTime") if not body.get(k)]
        if missing:
            raise GraphError(400, "InvalidRequest", f"Missing required properties: {', '.join(missing)}.")
        if str(body["resource"]) not in EVENT_RESOURCES:
            raise GraphError(400, "InvalidRequest", f"Resource '{body['resource']}' is not supported by the emulator.")
        client_state = body.get("clientState")
        if client_state is not None and len(str(client_state)) > 128:
            raise GraphError(400, "InvalidRequest", "clientState must be at most 128 characters.")
        expiration = state.check_expiration(body["expirationDateTime"])
        for url in filter(None, (body["notificationUrl"], body.get("lifecycleNotificationUrl"))):
            failure = await asyncio.to_thread(validate_url, str(url))
            if failure is not None:
                raise GraphError(400, "InvalidRequest", f"Subscription validation request failed: {failure}.")
        return JSONResponse(state.add_subscription(body, expiration).view(), status_code=201)

    @router.get("/subscriptions/{sub_id}")
    def get_subscription(request: Request, sub_id: str) -> dict[str, Any]:
        state.authorize(request.headers.get("authorization"))
        return state.subscription(sub_id).view()

    @router.patch("/subscriptions/{sub_id}")
    async def renew_subscription(request: Request, sub_id: str) -> dict[str, Any]:
        state.authorize(request.headers.get("authorization"))
        body = await _json_body(request)
        sub = state.subscription(sub_id)
        if "lifecycleNotificationUrl" in body:
            raise GraphError(400, "InvalidRequest", "lifecycleNotificationUrl can only be set when subscribing.")
        with state.lock:
            sub.expiration = state.check_expiration(body.get("expirationDateTime"))
            sub.needs_reauthorization = False
        return sub.view()

    @router.post("/subscriptions/{sub_id}/reauthorize", status_code=204)
    def reauthorize_subscription(request: Request, sub_id: str) -> Response:
        state.authorize(request.headers.get("authorization"))
        with state.lock:
            state.subscription(sub_id).needs_reauthorization = False
        return Response(status_code=204)

    @router.delete("/subscriptions/{sub_id}", status_code=204)
    def delete_subscription(request: Request, sub_id: str) -> Response:
        state.authorize(request.headers.get("authorization"))
        state.subscription(sub_id)
        with state.lock:
            state.subscriptions.pop(sub_id, None)
        return Response(status_code=204)

    return router


def _guard(action: Any) -> Any:
    try:
        return action()
    except (BadTime, BadRecurrence) as exc:
        raise GraphError(400, "ErrorInvalidRequest", str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise GraphError(400, "ErrorInvalidRequest", f"Invalid request body: {exc}") from None


__all__ = ["graph_router", "parse_prefer"]

"""The emulator's in-memory world: calendars, events, OAuth clients and tokens, push channels.

Everything is guarded by one re-entrant lock: the FastAPI handlers run in a thread pool, the push
dispatcher in its own thread, and tests poke the same object directly.

Change log. Every write bumps a global sequence number and stamps the changed event with it (and
a new etag and ``updated``). Deleted events stay as ``status: cancelled`` tombstones, so "what
changed since sequence N" is simply "events stamped above N" — a sync token is an opaque string
that maps to ``(calendar, N)``. :meth:`GoogleState.expire_sync_tokens` forgets the mapping, so the
next incremental list answers 410 ``fullSyncRequired``.

Events are stored in three shapes, as Google exposes them with ``singleEvents=false``: one-off
events, recurring masters (with ``recurrence``), and exceptions — modified or cancelled instances,
stored under their instance id ``<masterId>_<originalStart>`` with ``recurringEventId`` and
``originalStartTime``. Instances that were never modified are generated from the master on read.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import random
import re
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.google.errors import (
    FAULTS,
    ApiError,
    OAuthError,
    bad_request,
    condition_not_met,
    full_sync_required,
    invalid_credentials,
    login_required,
    not_found,
)
from sandbox.google.push import PushDispatcher, PushMessage
from sandbox.google.times import (
    EventTime,
    duration,
    expand,
    format_timestamp,
    parse_instance_suffix,
    parse_rfc3339,
    parse_timestamp,
    validate_recurrence,
    zone,
)

PRIMARY_EMAIL = "therapist@example.com"
DEFAULT_CLIENT_ID = "alliance-emulator-client.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "alliance-emulator-secret"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
READONLY_SCOPES = {
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/calendar.events.owned.readonly",
}
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
# Fields a client cannot set (or only at creation: id / iCalUID); everything else is stored as sent.
_READ_ONLY = {
    "kind", "etag", "id", "created", "updated", "htmlLink", "iCalUID", "creator", "organizer",
    "hangoutLink", "recurringEventId", "originalStartTime", "conferenceData", "start", "end",
    "sequence", "privateCopy", "locked",
}  # fmt: skip
_LIST_FORBIDDEN_WITH_SYNC = (
    "iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty", "timeMin", "timeMax",
    "updatedMin",
)  # fmt: skip
_CONFERENCE_TYPES = {"hangoutsMeet", "eventHangout", "eventNamedHangout", "addOn"}


@dataclass
class Settings:
    """Knobs a test or benchmark may turn (all also settable through ``PUT /_emulator/settings``)."""

    access_token_ttl: int = 3600  # seconds; ``expires_in`` of issued access tokens
    require_auth: bool = True  # False: API calls need no bearer token at all
    require_pkce: bool = False  # True: the authorize endpoint refuses requests without code_challenge
    consent: str = "approve"  # what the auto-consent answers: "approve" or "deny"
    meet_pending_requests: int = 1  # a Meet createRequest stays "pending" for this many later API requests
    meet_outcome: str = "success"  # "success" or "failure"
    max_page_size: int | None = None  # cap pages below maxResults (Google may return short pages)
    empty_pages: bool = False  # True: an empty page (with nextPageToken) before every non-empty one
    channel_default_ttl: int = 3600  # seconds, when watch gives no expiration
    channel_max_ttl: int = 7 * 24 * 3600
    push_timeout: float = 5.0
    push_retries: int = 3  # re-deliveries after 500/502/503/504 or a transport error
    push_retry_base: float = 0.2  # seconds, doubled per attempt
    expansion_days: int = 730  # how far unbounded series are expanded when no timeMax is given
    max_instances: int = 5000  # hard cap of instances per series in one expansion
    full_tombstones: bool = False  # True: deleted events keep all fields; False: id-only stubs
    latency: float = 0.0  # seconds every API and OAuth request waits before it is served (I/O-bound provider)
    push_senders: int = 1  # threads delivering pushes concurrently (read when the first push is sent)


@dataclass
class Calendar:
    id: str
    summary: str
    time_zone: str
    resource_id: str
    etag: str = '"0"'
    updated: str = ""
    events: dict[str, StoredEvent] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)


@dataclass
class StoredEvent:
    """One stored event: its resource fields, parsed times, and the change sequence that last touched it."""

    data: dict[str, Any]  # resource fields except start / end / originalStartTime
    start: EventTime
    end: EventTime
    original_start: EventTime | None = None  # exceptions only
    seq: int = 0

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def cancelled(self) -> bool:
        return self.data.get("status") == "cancelled"

    @property
    def is_master(self) -> bool:
        return bool(self.data.get("recurrence")) and "recurringEventId" not in self.data

    @property
    def is_exception(self) -> bool:
        return "recurringEventId" in self.data


@dataclass
class Channel:
    id: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    params: dict[str, Any] = field(default_factory=dict)
    message_number: int = 0


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str] | None = None  # None: any loopback http://127.0.0.1 / localhost URI


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str | None
    code_challenge_method: str | None
    offline: bool
    consent_shown: bool
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    client_id: str
    scopes: list[str]
    refresh_token: str | None
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    client_id: str
    scopes: list[str]
    expires_at: float
    grant: Grant | None = None
    revoked: bool = False


@dataclass
class Fault:
    """Answer the next ``count`` requests matching ``method``/``path`` with an error and/or a delay."""

    path: str = "/calendar/v3/"  # a prefix of the request path, or a glob when it contains '*'
    method: str | None = None
    count: int = 1
    status: int | None = None  # None with delay > 0: only slow the request down
    reason: str = ""
    domain: str = "global"
    message: str = ""
    retry_after: int | None = None
    delay: float = 0.0
    id: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count == 0 or (self.method and self.method.upper() != method.upper()):
            return False
        if "*" in self.path:
            return fnmatch.fnmatchcase(path, self.path)
        return path.startswith(self.path)


@dataclass(frozen=True)
class _Unrendered:
    """A listed event as it was when its listing began, rendered only when its page is asked for.

    A paging server does each page's work when that page is asked for; rendering (copying) all of
    a big calendar's events for the first page made that one page carry the whole listing's work.
    ``event`` is a snapshot: writes replace an event's fields (nested values are never changed in
    place), so a shallow copy of its fields keeps what the listing saw.
    """

    event: StoredEvent
    out_tz: ZoneInfo

    @classmethod
    def of(cls, ev: StoredEvent, out_tz: ZoneInfo) -> _Unrendered:
        return cls(StoredEvent(dict(ev.data), ev.start, ev.end, ev.original_start, ev.seq), out_tz)


@dataclass
class _PageCursor:
    calendar_id: str
    items: Sequence[dict[str, Any] | _Unrendered]
    sync_seq: int | None  # the sequence the listing started at; None: no sync token at the end
    single_events: bool
    after_empty: bool = False  # the previous page was an injected empty one


def _now() -> datetime:
    return datetime.now(UTC)


def _quote_etag(number: int) -> str:
    return f'"{number}"'


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Google patch semantics: objects merge recursively, arrays and scalars replace, null removes."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _bool_param(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise bad_request(f"Invalid value for: {name}", location=name)


class GoogleState:
    """The emulated Google account (one user, ``therapist@example.com``) and its calendars."""

    def __init__(
        self,
        *,
        time_zone: str = "Europe/Madrid",
        settings: Settings | None = None,
        clock: Callable[[], datetime] = _now,
        seed: int | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.settings = settings or Settings()
        self.clock = clock
        self.rng = random.Random(seed)
        self.base_url: str | None = None  # set by the server helper, else from the first request
        self.closed = threading.Event()
        self.primary_id = PRIMARY_EMAIL
        self.push = PushDispatcher(self)
        self._seq = 0
        self._fault_ids = 0
        self._last_stamp: datetime | None = None
        self._reset_data(time_zone)

    def _reset_data(self, time_zone: str) -> None:
        self.calendars: dict[str, Calendar] = {}
        self._sync_tokens: dict[str, tuple[str, int, bool]] = {}
        self._page_cursors: OrderedDict[str, _PageCursor] = OrderedDict()
        self._pending_conferences: dict[tuple[str, str], int] = {}
        # OAuth
        self.clients: dict[str, OAuthClient] = {
            DEFAULT_CLIENT_ID: OAuthClient(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        }
        self._codes: dict[str, AuthCode] = {}
        self._grants: dict[str, Grant] = {}  # by refresh token
        self._access: dict[str, AccessToken] = {}
        self._consented: set[str] = set()
        self.pending_consents: dict[str, dict[str, str]] = {}
        # push, faults, request log
        self.channels: dict[str, Channel] = {}
        self.push_faults: dict[str, int] = {"drop": 0, "duplicate": 0}
        self.faults: list[Fault] = []
        self.request_log: list[dict[str, Any]] = []
        self.add_calendar(PRIMARY_EMAIL, summary=PRIMARY_EMAIL, time_zone=time_zone)

    def reset(self) -> None:
        """Forget calendars, events, tokens, channels, faults and the log (settings stay)."""
        with self.lock:
            self._reset_data(self.calendars[self.primary_id].time_zone)

    def reopen(self) -> None:
        """Make a closed state usable again (a second server run over the same world)."""
        with self.lock:
            if self.closed.is_set():
                self.closed.clear()
                self.push = PushDispatcher(self)

    # -----------------------------------------------------------------------------------------
    # plumbing

    def _stamp(self) -> tuple[int, str]:
        """Next change sequence and a strictly increasing ``updated`` timestamp."""
        self._seq += 1
        now = self.clock().astimezone(UTC)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = now
        return self._seq, format_timestamp(now)

    def _touch(self, cal: Calendar, ev: StoredEvent, *, notify: bool = True) -> None:
        seq, stamp = self._stamp()
        ev.seq = seq
        ev.data["etag"] = _quote_etag(3_000_000_000_000_000 + seq)
        ev.data["updated"] = stamp
        ev.data.setdefault("created", stamp)
        cal.etag = ev.data["etag"]
        cal.updated = stamp
        if notify:
            self._notify(cal.id)

    def _token(self, prefix: str = "", nbytes: int = 24) -> str:
        return prefix + base64.urlsafe_b64encode(self.rng.randbytes(nbytes)).decode().rstrip("=")

    def calendar(self, calendar_id: str) -> Calendar:
        cal = self.calendars.get(self.primary_id if calendar_id == "primary" else calendar_id)
        if cal is None:
            raise not_found()
        return cal

    def add_calendar(self, calendar_id: str, *, summary: str | None = None, time_zone: str = "Europe/Madrid") -> str:
        zone(time_zone)
        with self.lock:
            if calendar_id not in self.calendars:
                self.calendars[calendar_id] = Calendar(
                    id=calendar_id,
                    summary=summary or calendar_id,
                    time_zone=time_zone,
                    resource_id=self._token(nbytes=18),
                    updated=format_timestamp(self.clock()),
                )
            return calendar_id

    def close(self) -> None:
        """Stop the push thread and cut injected delays short (the server helper calls this)."""
        self.closed.set()
        self.push.close()

    # -----------------------------------------------------------------------------------------
    # rendering

    def _tz_param(self, cal: Calendar, value: str | None) -> ZoneInfo:
        if not value:
            return cal.tz
        try:
            return zone(value)
        except ValueError as exc:
            raise bad_request("Invalid time zone.", location="timeZone") from exc

    def _html_link(self, cal: Calendar, event_id: str) -> str:
        eid = base64.urlsafe_b64encode(f"{event_id} {cal.id}".encode()).decode().rstrip("=")
        return f"https://www.google.com/calendar/event?eid={eid}"

    def _render(self, cal: Calendar, ev: StoredEvent, out_tz: ZoneInfo) -> dict[str, Any]:
        if ev.cancelled and not self.settings.full_tombstones:
            stub: dict[str, Any] = {
                "kind": "calendar#event",
                "etag": ev.data["etag"],
                "id": ev.id,
                "status": "cancelled",
            }
            if ev.is_exception and ev.original_start is not None:
                stub["recurringEventId"] = ev.data["recurringEventId"]
                stub["originalStartTime"] = ev.original_start.render(out_tz)
            return stub
        out = copy.deepcopy(ev.data)
        out["start"] = ev.start.render(out_tz)
        out["end"] = ev.end.render(out_tz)
        if ev.original_start is not None:
            out["originalStartTime"] = ev.original_start.render(out_tz)
        return out

    def _virtual_instance(self, cal: Calendar, master: StoredEvent, occurrence: EventTime) -> StoredEvent:
        """The unmodified instance of ``master`` at ``occurrence`` (not stored)."""
        data = copy.deepcopy(master.data)
        data.pop("recurrence", None)
        data["id"] = f"{master.id}_{occurrence.instance_suffix()}"
        data["recurringEventId"] = master.id
        data["htmlLink"] = self._html_link(cal, data["id"])
        return StoredEvent(
            data=data,
            start=occurrence,
            end=occurrence.shift(duration(master.start, master.end)),
            original_start=occurrence,
            seq=master.seq,
        )

    def _instances(self, cal: Calendar, master: StoredEvent, *, until: datetime | None) -> Iterator[StoredEvent]:
        """Every instance of ``master`` (exceptions in place of the generated ones), in order."""
        if until is None:
            horizon_from = max(self.clock(), master.start.instant(cal.tz))
            until = horizon_from + timedelta(days=self.settings.expansion_days)
        for occurrence in expand(
            master.start, master.data.get("recurrence", []), cal.tz, until=until, limit=self.settings.max_instances
        ):
            stored = cal.events.get(f"{master.id}_{occurrence.instance_suffix()}")
            yield stored if stored is not None else self._virtual_instance(cal, master, occurrence)

    def _find(self, cal: Calendar, event_id: str) -> StoredEvent:
        """A stored event, or a generated instance addressed by its instance id; 404 otherwise."""
        ev = cal.events.get(event_id)
        if ev is not None:
            return ev
        master_id, sep, suffix = event_id.rpartition("_")
        master = cal.events.get(master_id) if sep else None
        if master is None or not master.is_master or master.cancelled:
            raise not_found()
        wanted = parse_instance_suffix(suffix, master.start.all_day, master.start.tz)
        if wanted is None:
            raise not_found()
        limit_at = wanted.instant(cal.tz) + timedelta(seconds=1)
        for occurrence in expand(master.start, master.data.get("recurrence", []), cal.tz, until=limit_at, limit=10**6):
            if occurrence.same_slot(wanted):
                return self._virtual_instance(cal, master, occurrence)
        raise not_found()

    # -----------------------------------------------------------------------------------------
    # reads

    def get_event(self, calendar_id: str, event_id: str, *, time_zone: str | None = None) -> dict[str, Any]:
        with self.lock:
            cal = self.calendar(calendar_id)
            return self._render(cal, self._find(cal, event_id), self._tz_param(cal, time_zone))

    def etag_of(self, calendar_id: str, event_id: str) -> str:
        with self.lock:
            cal = self.calendar(calendar_id)
            return str(self._find(cal, event_id).data["etag"])

    def list_events(self, calendar_id: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``events.list``: full listings, incremental listings with a sync token, and paging."""
        with self.lock:
            cal = self.calendar(calendar_id)
            p = _Params(params)
            max_results = p.int("maxResults", 250)
            page_token = p.get("pageToken")
            if page_token:
                cursor = self._page_cursors.pop(page_token, None)
                if cursor is None or cursor.calendar_id != cal.id:
                    raise bad_request("Invalid page token value.", location="pageToken")
                return self._page(cal, cursor, max_results)
            out_tz = self._tz_param(cal, p.get("timeZone"))
            single = bool(p.bool("singleEvents"))
            event_types = set(p.all("eventTypes"))
            sync_token = p.get("syncToken")
            if sync_token:
                for name in _LIST_FORBIDDEN_WITH_SYNC:
                    if p.has(name):
                        raise bad_request(f"The '{name}' parameter is not allowed with a syncToken.", location=name)
                if p.bool("showDeleted") is False:
                    raise bad_request("showDeleted=false is not allowed with a syncToken.", location="showDeleted")
                point = self._sync_tokens.get(sync_token)
                if point is None or point[0] != cal.id:
                    raise full_sync_required()
                items = self._changes_since(cal, point[1], single, out_tz)
                items = [i for i in items if not event_types or i.get("eventType", "default") in event_types]
                cursor = _PageCursor(cal.id, items, self._seq, single)
                return self._page(cal, cursor, max_results)
            listed, sync_allowed = self._full_listing(cal, p, single, out_tz, event_types)
            cursor = _PageCursor(cal.id, listed, self._seq if sync_allowed else None, single)
            return self._page(cal, cursor, max_results)

    def _page(self, cal: Calendar, cursor: _PageCursor, max_results: int) -> dict[str, Any]:
        size = min(max(max_results, 1), 2500)
        if self.settings.max_page_size is not None:
            size = min(size, max(self.settings.max_page_size, 0))
        empty = self.settings.empty_pages and bool(cursor.items) and not cursor.after_empty
        if empty:
            page, rest = [], cursor.items
        else:
            page, rest = self._rendered(cal, cursor.items[:size]), cursor.items[size:]
        out: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": cal.etag,
            "summary": cal.summary,
            "description": "",
            "updated": cal.updated,
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [{"method": "popup", "minutes": 10}],
            "items": page,
        }
        if rest or (size == 0 and cursor.items):
            token = self._token("CiAK", 30)
            self._page_cursors[token] = _PageCursor(
                cursor.calendar_id, rest, cursor.sync_seq, cursor.single_events, after_empty=empty
            )
            while len(self._page_cursors) > 2000:
                self._page_cursors.popitem(last=False)
            out["nextPageToken"] = token
        elif cursor.sync_seq is not None:
            token = self._token("CPD", 24) + "="
            self._sync_tokens[token] = (cal.id, cursor.sync_seq, cursor.single_events)
            out["nextSyncToken"] = token
        return out

    def _rendered(self, cal: Calendar, items: Sequence[dict[str, Any] | _Unrendered]) -> list[dict[str, Any]]:
        return [self._render(cal, i.event, i.out_tz) if isinstance(i, _Unrendered) else i for i in items]

    def _full_listing(
        self, cal: Calendar, p: _Params, single: bool, out_tz: ZoneInfo, event_types: set[str]
    ) -> tuple[list[dict[str, Any] | _Unrendered], bool]:
        order_by = p.get("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise bad_request("Invalid value for: orderBy", location="orderBy")
        if order_by == "startTime" and not single:
            raise bad_request("The requested ordering is not available for the particular query.", "badRequest")
        time_min = parse_rfc3339(p["timeMin"], param="timeMin") if p.has("timeMin") else None
        time_max = parse_rfc3339(p["timeMax"], param="timeMax") if p.has("timeMax") else None
        if time_min is not None and time_max is not None and time_min >= time_max:
            raise ApiError(
                400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar",
                location="timeMax", location_type="parameter",
            )  # fmt: skip
        updated_min = parse_rfc3339(p["updatedMin"], param="updatedMin") if p.has("updatedMin") else None
        show_deleted = bool(p.bool("showDeleted")) or updated_min is not None
        ical_uid = p.get("iCalUID")
        query = (p.get("q") or "").lower()
        private_props = [_prop(v, "privateExtendedProperty") for v in p.all("privateExtendedProperty")]
        shared_props = [_prop(v, "sharedExtendedProperty") for v in p.all("sharedExtendedProperty")]

        def in_window(ev: StoredEvent) -> bool:
            if time_min is not None and ev.end.instant(cal.tz) <= time_min:
                return False
            return not (time_max is not None and ev.start.instant(cal.tz) >= time_max)

        def keep(ev: StoredEvent) -> bool:
            if event_types and ev.data.get("eventType", "default") not in event_types:
                return False
            if ical_uid and ev.data.get("iCalUID") != ical_uid:
                return False
            if updated_min is not None and parse_timestamp(ev.data["updated"]) < updated_min:
                return False
            if query:
                text = " ".join(str(ev.data.get(k, "")) for k in ("summary", "description", "location")).lower()
                if query not in text:
                    return False
            props = ev.data.get("extendedProperties") or {}
            for scope_name, wanted in (("private", private_props), ("shared", shared_props)):
                have = props.get(scope_name) or {}
                if any(have.get(k) != v for k, v in wanted):
                    return False
            return True

        selected: list[StoredEvent] = []
        for ev in cal.events.values():
            if single:
                if ev.is_exception:
                    continue  # reached through its master
                if ev.is_master:
                    if ev.cancelled:
                        continue
                    for inst in self._instances(cal, ev, until=time_max):
                        if inst.cancelled and not show_deleted:
                            continue
                        if in_window(inst) and keep(inst):
                            selected.append(inst)
                    continue
                if ev.cancelled and not show_deleted:
                    continue
                if in_window(ev) and keep(ev):
                    selected.append(ev)
            else:
                if ev.cancelled and not show_deleted and not ev.is_exception:
                    continue
                if not keep(ev):
                    continue
                if ev.is_master and not ev.cancelled:
                    if (time_min is not None or time_max is not None) and not any(
                        in_window(inst) for inst in self._instances(cal, ev, until=time_max)
                    ):
                        continue
                elif not in_window(ev):
                    continue
                selected.append(ev)
        if order_by == "startTime":
            selected.sort(key=lambda e: e.start.instant(cal.tz))
        elif order_by == "updated":
            selected.sort(key=lambda e: e.data["updated"])
        # No sync token after listings whose filters cannot be repeated with one (see README).
        sync_allowed = not any(
            p.has(n)
            for n in ("orderBy", "q", "iCalUID", "privateExtendedProperty", "sharedExtendedProperty", "updatedMin")
        )
        return [_Unrendered.of(ev, out_tz) for ev in selected], sync_allowed

    def _changes_since(self, cal: Calendar, seq: int, single: bool, out_tz: ZoneInfo) -> list[dict[str, Any]]:
        changed = sorted((ev for ev in cal.events.values() if ev.seq > seq), key=lambda e: e.seq)
        if not single:
            return [self._render(cal, ev, out_tz) for ev in changed]
        items: list[dict[str, Any]] = []
        seen: set[str] = set()

        def add(ev: StoredEvent) -> None:
            if ev.id not in seen:
                seen.add(ev.id)
                items.append(self._render(cal, ev, out_tz))

        for ev in changed:
            if ev.is_master:
                for inst in self._instances(cal, ev, until=None):
                    if ev.cancelled and not inst.cancelled:  # a deleted series: every instance is gone
                        inst = copy.copy(inst)
                        inst.data = {**inst.data, "status": "cancelled"}
                    add(inst)
            else:
                add(ev)
        return items

    def list_instances(self, calendar_id: str, event_id: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        with self.lock:
            cal = self.calendar(calendar_id)
            p = _Params(params)
            max_results = p.int("maxResults", 250)
            page_token = p.get("pageToken")
            if page_token:
                cursor = self._page_cursors.pop(page_token, None)
                if cursor is None or cursor.calendar_id != cal.id:
                    raise bad_request("Invalid page token value.", location="pageToken")
                return self._page(cal, cursor, max_results)
            master = cal.events.get(event_id)
            if master is None or (master.cancelled and not master.is_master):
                raise not_found()
            out_tz = self._tz_param(cal, p.get("timeZone"))
            items: list[dict[str, Any]] = []
            if master.is_master and not master.cancelled:
                time_min = parse_rfc3339(p["timeMin"], param="timeMin") if p.has("timeMin") else None
                time_max = parse_rfc3339(p["timeMax"], param="timeMax") if p.has("timeMax") else None
                original = (
                    EventTime.parse({"dateTime": p["originalStart"]}, "originalStart")
                    if p.has("originalStart")
                    else None
                )
                show_deleted = bool(p.bool("showDeleted"))
                for inst in self._instances(cal, master, until=time_max):
                    if inst.cancelled and not show_deleted:
                        continue
                    if original is not None and not (inst.original_start and inst.original_start.same_slot(original)):
                        continue
                    if time_min is not None and inst.end.instant(cal.tz) < time_min:  # inclusive here
                        continue
                    if time_max is not None and inst.start.instant(cal.tz) >= time_max:
                        continue
                    items.append(self._render(cal, inst, out_tz))
            return self._page(cal, _PageCursor(cal.id, items, None, True), max_results)

    # -----------------------------------------------------------------------------------------
    # writes

    def _check_if_match(self, ev: StoredEvent, if_match: str | None) -> None:
        if if_match is None:
            return
        wanted = [t.strip() for t in if_match.split(",")]
        if "*" not in wanted and ev.data["etag"] not in wanted:
            raise condition_not_met()

    def _owner(self, cal: Calendar) -> dict[str, Any]:
        if cal.id == self.primary_id:
            return {"email": PRIMARY_EMAIL, "self": True}
        return {"email": cal.id, "displayName": cal.summary, "self": True}

    def _validate_times(self, body: dict[str, Any], recurring: bool) -> tuple[EventTime, EventTime]:
        start = EventTime.parse(body.get("start"), "start")
        end = EventTime.parse(body.get("end"), "end")
        if start.all_day != end.all_day:
            raise bad_request("Start and end times must either both be date or both be dateTime.")
        if recurring and not start.all_day:
            if not start.tz:
                raise bad_request("Missing time zone definition for start time.", "required")
            if not end.tz:
                raise bad_request("Missing time zone definition for end time.", "required")
        if duration(start, end) < timedelta(0):
            raise ApiError(
                400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar", location="end",
                location_type="parameter",
            )  # fmt: skip
        return start, end

    def _apply_conference(
        self,
        cal: Calendar,
        ev: StoredEvent,
        body: dict[str, Any],
        version: int,
        *,
        replace: bool,
        previous: dict[str, Any] | None,
    ) -> bool:
        """Apply ``conferenceData`` from ``body`` (ignored at version 0); True when a create is pending."""
        if previous is not None:
            ev.data["conferenceData"] = copy.deepcopy(previous)
            link = self._hangout_link(previous)
            if link:
                ev.data["hangoutLink"] = link
        if version < 1:
            return False
        if "conferenceData" not in body:
            if replace:  # a full update at version 1 without conferenceData removes it
                ev.data.pop("conferenceData", None)
                ev.data.pop("hangoutLink", None)
            return False
        wanted = body["conferenceData"]
        if not wanted:
            ev.data.pop("conferenceData", None)
            ev.data.pop("hangoutLink", None)
            return False
        if not isinstance(wanted, dict):
            raise bad_request("Invalid conference data.", location="conferenceData")
        create = wanted.get("createRequest")
        if isinstance(create, dict) and not (wanted.get("entryPoints") and wanted.get("conferenceSolution")):
            request_id = create.get("requestId")
            if not request_id:
                raise bad_request("Missing conference request id.", "required", location="conferenceData.createRequest")
            old = (previous or {}).get("createRequest") or {}
            if old.get("requestId") == request_id:
                return False  # the same requestId again is ignored
            kind = ((create.get("conferenceSolutionKey") or {}).get("type")) or "hangoutsMeet"
            if kind not in _CONFERENCE_TYPES:
                raise bad_request("Invalid conference type value.", location="conferenceData")
            ev.data["conferenceData"] = {
                "createRequest": {
                    "requestId": request_id,
                    "conferenceSolutionKey": {"type": kind},
                    "status": {"statusCode": "pending"},
                }
            }
            ev.data.pop("hangoutLink", None)
            return True
        data = copy.deepcopy(wanted)
        ev.data["conferenceData"] = data
        link = self._hangout_link(data)
        if link:
            ev.data["hangoutLink"] = link
        else:
            ev.data.pop("hangoutLink", None)
        return False

    @staticmethod
    def _hangout_link(conference: dict[str, Any] | None) -> str | None:
        if not conference or (conference.get("conferenceSolution") or {}).get("key", {}).get("type") != "hangoutsMeet":
            return None
        for entry in conference.get("entryPoints") or []:
            if entry.get("entryPointType") == "video" and entry.get("uri"):
                return str(entry["uri"])
        return None

    def _meet_code(self) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz"
        return "-".join("".join(self.rng.choice(letters) for _ in range(n)) for n in (3, 4, 3))

    def _resolve_conference(self, cal: Calendar, ev: StoredEvent) -> None:
        conference = ev.data.get("conferenceData") or {}
        create = conference.get("createRequest") or {}
        if (create.get("status") or {}).get("statusCode") != "pending":
            return
        if self.settings.meet_outcome == "failure":
            ev.data["conferenceData"] = {"createRequest": {**create, "status": {"statusCode": "failure"}}}
        else:
            code = self._meet_code()
            uri = f"https://meet.google.com/{code}"
            ev.data["conferenceData"] = {
                "createRequest": {**create, "status": {"statusCode": "success"}},
                "entryPoints": [{"entryPointType": "video", "uri": uri, "label": f"meet.google.com/{code}"}],
                "conferenceSolution": {
                    "key": {"type": "hangoutsMeet"},
                    "name": "Google Meet",
                    "iconUri": "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/logo_meet_2020q4_color_2x_web_512dp.png",
                },
                "conferenceId": code,
                "signature": self._token(nbytes=12),
            }
            ev.data["hangoutLink"] = uri
        self._touch(cal, ev)

    def tick(self) -> None:
        """Called before every Calendar API request: advances pending Meet creations."""
        with self.lock:
            for key in list(self._pending_conferences):
                self._pending_conferences[key] -= 1
                if self._pending_conferences[key] <= 0:
                    self._finish_conference(key)

    def complete_conferences(self) -> int:
        """Resolve every pending Meet creation now; returns how many were resolved."""
        with self.lock:
            keys = list(self._pending_conferences)
            for key in keys:
                self._finish_conference(key)
            return len(keys)

    def _finish_conference(self, key: tuple[str, str]) -> None:
        del self._pending_conferences[key]
        cal = self.calendars.get(key[0])
        ev = cal.events.get(key[1]) if cal else None
        if cal is not None and ev is not None and not ev.cancelled:
            self._resolve_conference(cal, ev)

    def _writable(self, body: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in body.items() if k not in _READ_ONLY}

    def insert_event(
        self, calendar_id: str, body: Any, *, conference_version: int = 0, allow_exception: bool = False
    ) -> dict[str, Any]:
        with self.lock:
            cal = self.calendar(calendar_id)
            if not isinstance(body, dict):
                raise bad_request("Parse Error", "parseError")
            if allow_exception and body.get("recurringEventId"):
                return self._seed_exception(cal, body, conference_version)
            event_id = body.get("id")
            if event_id is not None:
                if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
                    raise bad_request("Invalid resource id value.", location="id")
                if event_id in cal.events:
                    raise ApiError(409, "duplicate", "The requested identifier already exists.")
            else:
                event_id = self._new_event_id()
            recurrence = body.get("recurrence")
            if recurrence:
                validate_recurrence(recurrence)
            start, end = self._validate_times(body, bool(recurrence))
            if recurrence:
                next(expand(start, recurrence, cal.tz, until=None, limit=1), None)  # raises on a bad rule
            status = body.get("status", "confirmed")
            if status not in ("confirmed", "tentative", "cancelled"):
                raise bad_request("Invalid value for: status", location="status")
            data: dict[str, Any] = {
                "kind": "calendar#event",
                "etag": "",
                "id": event_id,
                "status": status,
                "htmlLink": self._html_link(cal, event_id),
                "updated": "",
                "summary": "",
                "creator": self._owner(cal),
                "organizer": self._owner(cal),
                "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
                "sequence": int(body.get("sequence") or 0),
                "reminders": {"useDefault": True},
                "eventType": body.get("eventType") or "default",
            }
            data.update(self._writable(body))
            if not data.get("summary"):
                data.pop("summary")
            ev = StoredEvent(data=data, start=start, end=end)
            pending = self._apply_conference(cal, ev, body, conference_version, replace=False, previous=None)
            cal.events[event_id] = ev
            self._touch(cal, ev)
            if pending:
                self._pending_conferences[(cal.id, event_id)] = max(1, self.settings.meet_pending_requests)
            return self._render(cal, ev, cal.tz)

    def _new_event_id(self) -> str:
        alphabet = "0123456789abcdefghijklmnopqrstuv"
        return "".join(self.rng.choice(alphabet) for _ in range(26))

    def _seed_exception(self, cal: Calendar, body: dict[str, Any], version: int) -> dict[str, Any]:
        master = cal.events.get(body["recurringEventId"])
        if master is None or not master.is_master:
            raise not_found()
        original = EventTime.parse(body.get("originalStartTime"), "originalStartTime")
        instance = self._find(cal, f"{master.id}_{original.instance_suffix()}")
        changes = {k: v for k, v in body.items() if k not in ("recurringEventId", "originalStartTime", "id")}
        if changes.get("status") == "cancelled":
            return self._delete(cal, instance, None)
        return self._modify(cal, instance, changes, None, version, replace=False)

    def _modify(
        self,
        cal: Calendar,
        ev: StoredEvent,
        body: dict[str, Any],
        if_match: str | None,
        version: int,
        *,
        replace: bool,
    ) -> dict[str, Any]:
        self._check_if_match(ev, if_match)
        if not isinstance(body, dict):
            raise bad_request("Parse Error", "parseError")
        current = self._render_full(cal, ev)
        if replace:
            kept = {k: current[k] for k in _READ_ONLY if k in current}
            merged = {**kept, **self._writable(body)}
            for key in ("start", "end"):
                if key in body:
                    merged[key] = copy.deepcopy(body[key])
                else:
                    merged.pop(key, None)
            if ev.is_exception:
                merged.pop("recurrence", None)
        else:
            changes = {k: v for k, v in body.items() if k not in _READ_ONLY - {"start", "end"}}
            for key in ("start", "end"):
                if isinstance(changes.get(key), dict):  # switching all-day <-> timed drops the other form
                    if "date" in changes[key]:
                        current[key].pop("dateTime", None)
                    if "dateTime" in changes[key]:
                        current[key].pop("date", None)
            merged = _deep_merge(current, changes)
        recurrence = merged.get("recurrence") if not ev.is_exception else None
        if recurrence:
            validate_recurrence(recurrence)
        start, end = self._validate_times(merged, bool(recurrence))
        if recurrence:
            next(expand(start, recurrence, cal.tz, until=None, limit=1), None)
        status = merged.get("status", "confirmed")
        if status not in ("confirmed", "tentative", "cancelled"):
            raise bad_request("Invalid value for: status", location="status")
        significant = (
            start != ev.start
            or end != ev.end
            or recurrence != ev.data.get("recurrence")
            or status != ev.data.get("status")
        )
        previous_conference = ev.data.get("conferenceData")
        data = {k: v for k, v in merged.items() if k not in ("start", "end", "originalStartTime")}
        for key in ("kind", "id", "htmlLink", "creator", "organizer", "iCalUID", "created", "eventType"):
            if key in ev.data:
                data[key] = ev.data[key]
        data["sequence"] = int(ev.data.get("sequence", 0)) + (1 if significant else 0)
        data["status"] = status
        data.setdefault("reminders", {"useDefault": True})
        if not recurrence:
            data.pop("recurrence", None)
        data.pop("conferenceData", None)
        data.pop("hangoutLink", None)
        stored = cal.events.get(ev.id)
        target = stored if stored is not None else ev  # a generated instance becomes an exception
        target.data = data
        target.start, target.end = start, end
        pending = self._apply_conference(cal, target, body, version, replace=replace, previous=previous_conference)
        if target.data.get("conferenceData") and not target.data.get("hangoutLink"):
            link = self._hangout_link(target.data["conferenceData"])
            if link:
                target.data["hangoutLink"] = link
        cal.events[target.id] = target
        self._touch(cal, target)
        if target.is_master and target.cancelled:
            self._cancel_exceptions(cal, target)
        if pending:
            self._pending_conferences[(cal.id, target.id)] = max(1, self.settings.meet_pending_requests)
        return self._render(cal, target, cal.tz)

    def _render_full(self, cal: Calendar, ev: StoredEvent) -> dict[str, Any]:
        out = copy.deepcopy(ev.data)
        out["start"] = ev.start.render(cal.tz)
        out["end"] = ev.end.render(cal.tz)
        if ev.start.moment is not None:  # keep the instant exactly, whatever the display zone
            out["start"]["dateTime"] = ev.start.moment.isoformat()
        if ev.end.moment is not None:
            out["end"]["dateTime"] = ev.end.moment.isoformat()
        return out

    def patch_event(
        self,
        calendar_id: str,
        event_id: str,
        body: Any,
        *,
        if_match: str | None = None,
        conference_version: int = 0,
    ) -> dict[str, Any]:
        with self.lock:
            cal = self.calendar(calendar_id)
            return self._modify(cal, self._find(cal, event_id), body, if_match, conference_version, replace=False)

    def update_event(
        self,
        calendar_id: str,
        event_id: str,
        body: Any,
        *,
        if_match: str | None = None,
        conference_version: int = 0,
    ) -> dict[str, Any]:
        with self.lock:
            cal = self.calendar(calendar_id)
            return self._modify(cal, self._find(cal, event_id), body, if_match, conference_version, replace=True)

    def delete_event(self, calendar_id: str, event_id: str, *, if_match: str | None = None) -> dict[str, Any]:
        """Delete an event (a tombstone stays) or cancel one instance of a series."""
        with self.lock:
            cal = self.calendar(calendar_id)
            return self._delete(cal, self._find(cal, event_id), if_match)

    def _delete(self, cal: Calendar, ev: StoredEvent, if_match: str | None) -> dict[str, Any]:
        self._check_if_match(ev, if_match)
        if ev.cancelled:
            raise ApiError(410, "deleted", "Resource has been deleted")
        ev.data["status"] = "cancelled"
        ev.data["sequence"] = int(ev.data.get("sequence", 0)) + 1
        cal.events[ev.id] = ev
        self._touch(cal, ev)
        if ev.is_master:
            self._cancel_exceptions(cal, ev)
        self._pending_conferences.pop((cal.id, ev.id), None)
        return self._render(cal, ev, cal.tz)

    def _cancel_exceptions(self, cal: Calendar, master: StoredEvent) -> None:
        for other in list(cal.events.values()):
            if other.data.get("recurringEventId") == master.id and not other.cancelled:
                other.data["status"] = "cancelled"
                self._touch(cal, other, notify=False)

    # -----------------------------------------------------------------------------------------
    # what a therapist does in Google Calendar (control API; no auth, no etag checks)

    def seed_event(self, calendar_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an event as if made in the Google Calendar UI (conference data is kept as given).

        An exception of a series may be seeded directly with ``recurringEventId`` +
        ``originalStartTime`` (and ``status: cancelled`` to cancel that instance).
        """
        return self.insert_event(calendar_id, body, conference_version=1, allow_exception=True)

    def seed_events(self, calendar_id: str, bodies: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        with self.lock:
            return [self.seed_event(calendar_id, body) for body in bodies]

    def edit_event(self, calendar_id: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Patch an event or one instance (which becomes an exception), as the therapist would."""
        return self.patch_event(calendar_id, event_id, changes, conference_version=1)

    def move_event(
        self, calendar_id: str, event_id: str, start: dict[str, Any], end: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move an event or instance; without ``end`` the duration is kept."""
        with self.lock:
            cal = self.calendar(calendar_id)
            ev = self._find(cal, event_id)
            if end is None:
                new_start = EventTime.parse({**({"timeZone": ev.start.tz} if ev.start.tz else {}), **start}, "start")
                end = new_start.shift(duration(ev.start, ev.end)).render(cal.tz)
                if new_start.moment is not None:
                    end["dateTime"] = (new_start.moment + duration(ev.start, ev.end)).isoformat()
            return self._modify(cal, ev, {"start": start, "end": end}, None, 1, replace=False)

    def retitle_event(self, calendar_id: str, event_id: str, summary: str) -> dict[str, Any]:
        return self.edit_event(calendar_id, event_id, {"summary": summary})

    def cancel_event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        """Delete in the UI: a one-off or a whole series becomes a tombstone, an instance a cancelled exception."""
        return self.delete_event(calendar_id, event_id)

    def raw_events(self, calendar_id: str) -> list[dict[str, Any]]:
        """Every stored event (masters, exceptions, tombstones) with its change sequence."""
        with self.lock:
            cal = self.calendar(calendar_id)
            return [{**self._render_full(cal, ev), "_seq": ev.seq} for ev in cal.events.values()]

    def purge_tombstones(self, calendar_id: str | None = None) -> int:
        """Drop cancelled events for good (Google does after a while) and expire the sync tokens."""
        with self.lock:
            count = 0
            for cal in self.calendars.values():
                if calendar_id not in (None, cal.id):
                    continue
                for ev in list(cal.events.values()):
                    if ev.cancelled and not (ev.is_exception and ev.data["recurringEventId"] in cal.events):
                        del cal.events[ev.id]
                        count += 1
                self.expire_sync_tokens(cal.id)
            return count

    def expire_sync_tokens(self, calendar_id: str | None = None) -> int:
        """Forget issued sync tokens: the next incremental list answers 410 ``fullSyncRequired``."""
        with self.lock:
            doomed = [t for t, point in self._sync_tokens.items() if calendar_id in (None, point[0])]
            for token in doomed:
                del self._sync_tokens[token]
            return len(doomed)

    # -----------------------------------------------------------------------------------------
    # OAuth

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None) -> None:
        with self.lock:
            self.clients[client_id] = OAuthClient(client_id, client_secret, redirect_uris)

    def redirect_allowed(self, client: OAuthClient, redirect_uri: str) -> bool:
        if client.redirect_uris is not None:
            return redirect_uri in client.redirect_uris
        parsed = urllib.parse.urlsplit(redirect_uri)
        return parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1")

    def issue_code(self, params: dict[str, str], *, consent_shown: bool) -> str:
        with self.lock:
            code = self._token("4/0A", 30)
            self._codes[code] = AuthCode(
                code=code,
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                scopes=params.get("scope", "").split(),
                code_challenge=params.get("code_challenge") or None,
                code_challenge_method=(params.get("code_challenge_method") or "plain")
                if params.get("code_challenge")
                else None,
                offline=params.get("access_type") == "offline",
                consent_shown=consent_shown,
                expires_at=time.time() + 600,
            )
            return code

    def has_consented(self, client_id: str) -> bool:
        with self.lock:
            return client_id in self._consented

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> OAuthClient:
        client = self.clients.get(client_id or "")
        if client is None:
            raise OAuthError("invalid_client", "The OAuth client was not found.", 401)
        if client_secret != client.client_secret:
            raise OAuthError("invalid_client", "Unauthorized", 401)
        return client

    def _mint_access(self, client_id: str, scopes: list[str], grant: Grant | None) -> AccessToken:
        token = AccessToken(
            token=self._token("ya29.a0", 36),
            client_id=client_id,
            scopes=list(scopes),
            expires_at=time.time() + self.settings.access_token_ttl,
            grant=grant,
        )
        self._access[token.token] = token
        return token

    def _token_response(self, access: AccessToken, refresh_token: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": self.settings.access_token_ttl,
            "scope": " ".join(access.scopes),
            "token_type": "Bearer",
        }
        if refresh_token:
            out["refresh_token"] = refresh_token
        return out

    def exchange_code(
        self, client: OAuthClient, code: str | None, redirect_uri: str | None, code_verifier: str | None
    ) -> dict[str, Any]:
        with self.lock:
            entry = self._codes.get(code or "")
            if entry is None:
                raise OAuthError("invalid_grant", "Malformed auth code.")
            if entry.used or entry.expires_at < time.time() or entry.client_id != client.client_id:
                raise OAuthError("invalid_grant", "Bad Request")
            if redirect_uri != entry.redirect_uri:
                raise OAuthError("redirect_uri_mismatch", "Bad Request")
            if entry.code_challenge is not None:
                if not code_verifier:
                    raise OAuthError("invalid_grant", "Missing code verifier.")
                if entry.code_challenge_method == "S256":
                    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
                    computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                else:
                    computed = code_verifier
                if not secrets.compare_digest(computed, entry.code_challenge):
                    raise OAuthError("invalid_grant", "Invalid code verifier.")
            entry.used = True
            first_consent = client.client_id not in self._consented
            self._consented.add(client.client_id)
            refresh_token = None
            grant = None
            if entry.offline and (entry.consent_shown or first_consent):
                refresh_token = self._token("1//0g", 40)
                grant = Grant(client.client_id, entry.scopes, refresh_token)
                self._grants[refresh_token] = grant
            access = self._mint_access(client.client_id, entry.scopes, grant)
            return self._token_response(access, refresh_token)

    def refresh(self, client: OAuthClient, refresh_token: str | None, scope: str | None) -> dict[str, Any]:
        with self.lock:
            grant = self._grants.get(refresh_token or "")
            if grant is None or grant.client_id != client.client_id:
                raise OAuthError("invalid_grant", "Bad Request")
            if grant.revoked:
                raise OAuthError("invalid_grant", "Token has been expired or revoked.")
            scopes = grant.scopes
            if scope:
                wanted = scope.split()
                if not set(wanted) <= set(grant.scopes):
                    raise OAuthError("invalid_scope", "Bad Request")
                scopes = wanted
            return self._token_response(self._mint_access(client.client_id, scopes, grant), None)

    def issue_tokens(
        self, *, client_id: str = DEFAULT_CLIENT_ID, scopes: list[str] | None = None, offline: bool = True
    ) -> dict[str, Any]:
        """Skip the consent dance: a token response as after ``access_type=offline`` consent."""
        with self.lock:
            if client_id not in self.clients:
                raise KeyError(client_id)
            scopes = scopes or [CALENDAR_SCOPE]
            self._consented.add(client_id)
            refresh_token = self._token("1//0g", 40) if offline else None
            grant = Grant(client_id, scopes, refresh_token) if refresh_token else None
            if grant is not None and refresh_token is not None:
                self._grants[refresh_token] = grant
            return self._token_response(self._mint_access(client_id, scopes, grant), refresh_token)

    def revoke_consent(self, client_id: str | None = None) -> int:
        """The user removes the app's access: refresh tokens answer ``invalid_grant``, access tokens 401."""
        with self.lock:
            count = 0
            for grant in self._grants.values():
                if client_id in (None, grant.client_id) and not grant.revoked:
                    grant.revoked = True
                    count += 1
            for access in self._access.values():
                if client_id in (None, access.client_id):
                    access.revoked = True
            self._consented = {c for c in self._consented if client_id not in (None, c)}
            return count

    def revoke_token(self, token: str) -> bool:
        """``POST /revoke``: a refresh token revokes its grant; an access token revokes itself (and its grant)."""
        with self.lock:
            grant = self._grants.get(token)
            access = self._access.get(token)
            if grant is None and access is not None:
                grant = access.grant
                access.revoked = True
            if grant is None:
                return access is not None
            grant.revoked = True
            for other in self._access.values():
                if other.grant is grant:
                    other.revoked = True
            return True

    def expire_access_tokens(self) -> int:
        """Make every issued access token stale: the next API call gets 401 and the client refreshes."""
        with self.lock:
            for access in self._access.values():
                access.expires_at = 0
            return len(self._access)

    def authorize_request(self, authorization: str | None, *, write: bool) -> AccessToken | None:
        if not self.settings.require_auth:
            return None
        if not authorization:
            raise login_required()
        scheme, _, token = authorization.partition(" ")
        with self.lock:
            access = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            if access is None or access.revoked or access.expires_at <= time.time():
                raise invalid_credentials()
            scopes = set(access.scopes)
            if not any(s.startswith("https://www.googleapis.com/auth/calendar") for s in scopes):
                raise ApiError(403, "insufficientPermissions", "Insufficient Permission")
            if write and scopes <= READONLY_SCOPES:
                raise ApiError(403, "insufficientPermissions", "Insufficient Permission")
            return access

    # -----------------------------------------------------------------------------------------
    # push channels

    def watch(self, calendar_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            cal = self.calendar(calendar_id)
            if not isinstance(body, dict):
                raise bad_request("Parse Error", "parseError")
            channel_id = body.get("id")
            address = body.get("address")
            if not channel_id:
                raise bad_request("Required", "required", location="id")
            if not address:
                raise bad_request("Required", "required", location="address")
            if body.get("type") not in ("web_hook", "webhook"):
                raise bad_request("Invalid value for: type", location="type")
            if len(str(channel_id)) > 64 or not re.fullmatch(r"[A-Za-z0-9\-_+/=]+", str(channel_id)):
                raise bad_request("Invalid channel id.", location="id")
            if channel_id in self.channels:
                raise bad_request(f"Channel id {channel_id} not unique", "channelIdNotUnique")
            scheme = urllib.parse.urlsplit(address).scheme
            if scheme not in ("https", "http"):
                raise ApiError(
                    400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS: " + address, domain="push"
                )
            token = body.get("token")
            if token is not None and len(str(token)) > 256:
                raise bad_request("Invalid channel token.", location="token")
            now_ms = int(self.clock().timestamp() * 1000)
            requested = body.get("expiration")
            ttl_ms = self.settings.channel_default_ttl * 1000
            if requested:
                ttl_ms = int(requested) - now_ms
            ttl_ms = max(1000, min(ttl_ms, self.settings.channel_max_ttl * 1000))
            quoted = urllib.parse.quote(cal.id, safe="")
            channel = Channel(
                id=str(channel_id),
                calendar_id=cal.id,
                resource_id=cal.resource_id,
                resource_uri=f"{self.base_url or 'http://127.0.0.1'}/calendar/v3/calendars/{quoted}/events?alt=json",
                address=str(address),
                token=str(token) if token is not None else None,
                expiration_ms=now_ms + ttl_ms,
                params=dict(body.get("params") or {}),
            )
            self.channels[channel.id] = channel
            self._send(channel, "sync")
            out = {
                "kind": "api#channel",
                "id": channel.id,
                "resourceId": channel.resource_id,
                "resourceUri": channel.resource_uri,
                "expiration": str(channel.expiration_ms),
            }
            if channel.token is not None:
                out["token"] = channel.token
            return out

    def stop_channel(self, body: Any) -> None:
        with self.lock:
            if not isinstance(body, dict) or not body.get("id"):
                raise bad_request("Required", "required", location="id")
            channel = self.channels.get(str(body["id"]))
            if channel is None or (body.get("resourceId") and body["resourceId"] != channel.resource_id):
                raise ApiError(404, "notFound", f"Channel '{body['id']}' not found for project 'emulator'")
            del self.channels[channel.id]

    def _notify(self, calendar_id: str) -> None:
        now_ms = int(self.clock().timestamp() * 1000)
        for channel in list(self.channels.values()):
            if channel.calendar_id != calendar_id:
                continue
            if channel.expiration_ms <= now_ms:
                del self.channels[channel.id]
                continue
            self._send(channel, "exists")

    def _send(self, channel: Channel, resource_state: str) -> None:
        if resource_state == "sync":
            channel.message_number = 1
        else:  # increasing, not consecutive: clients must not detect gaps with them
            channel.message_number += self.rng.randint(1, 9)
        message = PushMessage(
            channel_id=channel.id,
            address=channel.address,
            headers=_push_headers(channel, resource_state),
            resource_state=resource_state,
            message_number=channel.message_number,
        )
        if self.push_faults.get("drop", 0) > 0:
            self.push_faults["drop"] -= 1
            self.push.record(message, dropped=True)
            return
        copies = 1
        if self.push_faults.get("duplicate", 0) > 0:
            self.push_faults["duplicate"] -= 1
            copies = 2
        for _ in range(copies):
            self.push.submit(message)

    def ping(self, calendar_ids: Iterable[str]) -> int:
        """An ``exists`` ping on every live channel of each listed calendar, with no change behind it.

        Google sends such pings too (changes a listing does not show, repeated deliveries); a load
        test uses them to storm a webhook. A calendar listed twice is pinged twice. Returns how many
        messages were sent; an unknown calendar is a 404 like the API's.
        """
        sent = 0
        with self.lock:
            now_ms = int(self.clock().timestamp() * 1000)
            by_calendar: dict[str, list[Channel]] = {}
            for channel in self.channels.values():
                if channel.expiration_ms > now_ms:
                    by_calendar.setdefault(channel.calendar_id, []).append(channel)
            for calendar_id in calendar_ids:
                cal = self.calendar(calendar_id)
                for channel in by_calendar.get(cal.id, []):
                    self._send(channel, "exists")
                    sent += 1
        return sent

    def inject_push_faults(self, *, drop: int = 0, duplicate: int = 0) -> None:
        """Drop and/or duplicate the next push messages (any channel, ``sync`` included)."""
        with self.lock:
            self.push_faults["drop"] += drop
            self.push_faults["duplicate"] += duplicate

    # -----------------------------------------------------------------------------------------
    # faults and the request log

    def inject_fault(
        self,
        reason: str | None = "rateLimitExceeded",
        *,
        path: str = "/calendar/v3/",
        method: str | None = None,
        count: int = 1,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        message: str | None = None,
        domain: str | None = None,
    ) -> Fault:
        """Fail (and/or delay) the next ``count`` matching requests (``count=-1``: until cleared).

        ``reason`` names a canned error (``rateLimitExceeded`` is 403; ``rateLimitExceeded429``,
        ``userRateLimitExceeded``, ``quotaExceeded``, ``backendError``, ``serviceUnavailable``) or any
        reason when ``status`` is given; ``reason=None`` with ``delay`` only slows requests down.
        """
        with self.lock:
            if reason is None:
                fault = Fault(path=path, method=method, count=count, delay=delay)
            elif reason in FAULTS:  # a canned error; ``status`` may move it (rateLimitExceeded as 429)
                code, dom, why, text = FAULTS[reason]
                code = status or code
                fault = Fault(path, method, count, code, why, domain or dom, message or text, retry_after, delay)
            else:
                if status is None:
                    raise ValueError(f"unknown fault {reason!r}; give a status")
                fault = Fault(
                    path, method, count, status, reason, domain or "global", message or reason, retry_after, delay
                )
            self._fault_ids += 1
            fault.id = self._fault_ids
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.count > 0:
                        fault.count -= 1
                    return fault
            return None

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.request_log.append(entry)

    def requests(self, path_prefix: str = "", method: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(r)
                for r in self.request_log
                if r["path"].startswith(path_prefix) and (method is None or r["method"] == method.upper())
            ]

    def clear_request_log(self) -> None:
        with self.lock:
            self.request_log.clear()

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calendars": {
                    cid: {"summary": c.summary, "timeZone": c.time_zone, "events": len(c.events)}
                    for cid, c in self.calendars.items()
                },
                "channels": [asdict(c) for c in self.channels.values()],
                "faults": [asdict(f) for f in self.faults if f.count != 0],
                "push_faults": dict(self.push_faults),
                "pending_conferences": len(self._pending_conferences),
                "sync_tokens": len(self._sync_tokens),
                "settings": asdict(self.settings),
                "sequence": self._seq,
            }


def _push_headers(channel: Channel, resource_state: str) -> dict[str, str]:
    expiration = datetime.fromtimestamp(channel.expiration_ms / 1000, UTC)
    headers = {
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Expiration": expiration.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-URI": channel.resource_uri,
        "X-Goog-Resource-State": resource_state,
        "X-Goog-Message-Number": str(channel.message_number),
        "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
    }
    if channel.token is not None:
        headers["X-Goog-Channel-Token"] = channel.token
    return headers


def _prop(value: str, name: str) -> tuple[str, str]:
    key, sep, wanted = value.partition("=")
    if not sep:
        raise bad_request(f"Invalid value for: {name}", location=name)
    return key, wanted


class _Params:
    """Query parameters as googleapiclient sends them (repeated keys for repeated parameters)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.items)

    def get(self, name: str) -> str | None:
        for key, value in self.items:
            if key == name:
                return value
        return None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        assert value is not None
        return value

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.items if k == name]

    def bool(self, name: str) -> bool | None:
        return _bool_param(self.get(name), name)

    def int(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise bad_request(f"Invalid value for: {name}", location=name) from exc

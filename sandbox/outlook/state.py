"""The emulator's world: one tenant, one mailbox, its primary calendar, grants, delta state, faults.

Everything is in memory behind one lock. Tests drive it through the Python methods (the "control
API": seed, edit, revoke consent, expire delta tokens, inject faults) or the HTTP routes in
``sandbox/outlook/control.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.outlook.bodies import BodyError, as_document, content_type_of
from sandbox.outlook.events import (
    Event,
    Exception_,
    Instance,
    instance_at,
    parse_occurrence_id,
    series_instances,
    single_instance,
)
from sandbox.outlook.push import (
    EVENT_RESOURCES,
    Notifier,
    Subscription,
    lifecycle,
    max_expiration,
    notification,
)
from sandbox.outlook.times import parse_datetime_tz

DEFAULT_CLIENT_ID = "8a3e2c4f-0000-4000-8000-a11ace000001"
DEFAULT_CLIENT_SECRET = "sandbox-outlook-client-secret"
TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"
USER_OID = "00000000-0000-0000-66f3-3332eca7ea81"
USERNAME = "therapist@contoso.test"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
GRAPH_SCOPE_PREFIX = "https://graph.microsoft.com/"


@dataclass
class Settings:
    """Switches tests flip (reset to these defaults by :meth:`OutlookState.reset`)."""

    teams_available: bool = True  # False: a tenant without Teams (isOnlineMeeting stays false)
    default_page_size: int = 10
    max_page_size: int = 1000
    access_token_seconds: int = 3600
    max_concurrent: int = 4  # Outlook's per-mailbox concurrency limit (429 MailboxConcurrency beyond)
    # Delta delivery quirks the docs warn about, each off by default:
    empty_pages: float = 0.0  # chance of an empty page (with a nextLink) before each page
    replays: int = 0  # unchanged items sent again in each delta round
    shuffle: bool = False  # items of a round in random order
    removed_outside_window: bool = True  # "@removed" for changed items outside the window
    consent: str = "allow"  # "deny": the user cancels the consent screen (error=access_denied)
    # Change notifications:
    max_subscription_minutes: int = 4230  # Outlook events: "under three days"; longer asks are refused
    drop_notifications: float = 0.0  # chance that a notification is lost (delivery is not guaranteed)
    notification_batch_seconds: float = 0.05  # how long a burst piles up before one batched POST
    latency: float = 0.0  # seconds each Graph request takes (makes concurrency observable)


@dataclass
class Fault:
    """One injected failure: ``target`` is "token", "delta", "events", "batch" or "graph" (any Graph route)."""

    target: str
    status: int
    code: str = ""
    retry_after: int | None = None
    remaining: int = 1


@dataclass
class Grant:
    client_id: str
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str
    nonce: str | None
    scopes: tuple[str, ...]
    expires: datetime


@dataclass
class DeltaState:
    """What a delta token stands for: the window and the view it was issued after."""

    window: tuple[datetime, datetime]
    versions: dict[str, str]  # instance id -> version
    seq: int
    rest_ids: dict[str, str] = field(default_factory=dict)  # instance id -> its default (rest) id


@dataclass
class Paging:
    """One round being paged through with skip tokens."""

    items: list[Instance | tuple[str, str]]  # an instance to show, or (id, rest id) of a removed one
    offset: int
    page_size: int
    delta: DeltaState  # what the deltaLink at the end will stand for


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0
    # The peer's "host:port", as an access log has it: requests sent on one kept-alive connection
    # share it.
    client: str | None = None


class GraphError(Exception):
    """A Graph error in its JSON shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {"request-id": secrets.token_hex(8), "date": datetime.now(UTC).isoformat()},
            }
        }


class OAuthFailure(Exception):
    """An identity-platform error (``{"error", "error_description", "error_codes"}``)."""

    def __init__(
        self, error: str, description: str, status: int = 400, codes: tuple[int, ...] = (), **extra: Any
    ) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.codes, self.extra = error, description, status, codes, extra

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": self.description,
            "error_codes": list(self.codes),
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            **self.extra,
        }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class OutlookState:
    """The whole emulated world."""

    def __init__(self, *, seed: int | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.base_url = "https://127.0.0.1"
        self.settings = Settings()
        self.clients: dict[str, str] = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
        self.notifier = Notifier(self)
        self.reset()

    # ----- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.events: dict[str, Event] = {}
            self.rest_ids: dict[str, str] = {}  # rest id -> immutable id
            self.seq = 0
            self.grants: dict[str, Grant] = {}
            self.codes: dict[str, AuthCode] = {}
            self.refresh_tokens: dict[str, str] = {}  # refresh token -> grant id
            self.access_tokens: dict[str, tuple[str, datetime]] = {}  # token -> (grant id, expiry)
            self.delta_tokens: dict[str, DeltaState] = {}
            self.skip_tokens: dict[str, Paging] = {}
            self._instances_cache: dict[tuple[str, int, str], tuple[tuple[datetime, datetime], list[Instance]]] = {}
            self.faults: list[Fault] = []
            self.log: list[RequestRecord] = []
            self.subscriptions: dict[str, Subscription] = {}
            self.notifier.deliveries.clear()
            self.in_flight = 0
            self.max_in_flight = 0
            self.settings = Settings()

    def _id(self, prefix: str) -> str:
        return prefix + _b64url(self.rng.getrandbits(192).to_bytes(24, "big"))

    def _token(self) -> str:
        return _b64url(self.rng.getrandbits(256).to_bytes(32, "big"))

    # ----- faults and the request log --------------------------------------------------------

    def inject(
        self, target: str, status: int = 429, *, code: str = "", retry_after: int | None = None, times: int = 1
    ) -> None:
        """Fail the next ``times`` requests to ``target`` ("token", "delta", "events", "graph")."""
        with self.lock:
            self.faults.append(Fault(target, status, code, retry_after, times))

    def take_fault(self, target: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                # "graph" faults hit any Graph route; identity ("token") faults only the token endpoint.
                matches = fault.target == target or (fault.target == "graph" and target != "token")
                if matches and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def requests(self, path_part: str = "", method: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.log if path_part in r.path and (method is None or r.method == method)]

    # ----- identity --------------------------------------------------------------------------

    def check_client(self, client_id: str, secret: str | None) -> None:
        known = self.clients.get(client_id)
        if known is None:
            raise OAuthFailure(
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory.",
                codes=(700016,),
            )
        if secret is not None and not secrets.compare_digest(secret, known):
            raise OAuthFailure(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
                status=401,
                codes=(7000215,),
            )
        if secret is None:
            raise OAuthFailure(
                "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
                status=401,
                codes=(7000218,),
            )

    def new_code(
        self,
        client_id: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        challenge: str | None,
        method: str,
        nonce: str | None,
    ) -> str:
        with self.lock:
            code = "0.AS" + self._token()
            self.codes[code] = AuthCode(
                client_id, redirect_uri, challenge, method, nonce, scopes, self.clock() + timedelta(minutes=10)
            )
            return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str, verifier: str | None, base_issuer: str
    ) -> dict[str, Any]:
        with self.lock:
            entry = self.codes.pop(code, None)  # one use only
            if entry is None or entry.expires < self.clock() or entry.client_id != client_id:
                raise OAuthFailure(
                    "invalid_grant",
                    "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
                    codes=(70008,),
                )
            if entry.redirect_uri != redirect_uri:
                raise OAuthFailure(
                    "invalid_grant",
                    "AADSTS500112: The reply address does not match the reply address provided when "
                    "requesting the authorization code.",
                    codes=(500112,),
                )
            if entry.challenge is not None:
                expected = (
                    _b64url(hashlib.sha256((verifier or "").encode()).digest()) if entry.method == "S256" else verifier
                )
                if not verifier or not secrets.compare_digest(expected or "", entry.challenge):
                    raise OAuthFailure(
                        "invalid_grant",
                        "AADSTS50148: The code_verifier does not match the code_challenge supplied in the "
                        "authorization request for PKCE.",
                        codes=(50148,),
                    )
            grant_id = self._id("grant-")
            self.grants[grant_id] = Grant(client_id, entry.scopes)
            return self._tokens(grant_id, nonce=entry.nonce, base_issuer=base_issuer)

    def redeem_refresh(self, refresh_token: str, client_id: str, base_issuer: str) -> dict[str, Any]:
        with self.lock:
            grant_id = self.refresh_tokens.get(refresh_token)
            grant = self.grants.get(grant_id or "")
            if grant is None or grant.client_id != client_id:
                raise OAuthFailure(
                    "invalid_grant",
                    "AADSTS9002313: Invalid request. Request is malformed or invalid.",
                    codes=(9002313,),
                )
            if grant.revoked:
                raise OAuthFailure(
                    "invalid_grant",
                    "AADSTS65001: The user or administrator has not consented to use the application.",
                    codes=(65001,),
                    suberror="consent_required",
                )
            return self._tokens(grant_id or "", nonce=None, base_issuer=base_issuer)

    def _tokens(self, grant_id: str, *, nonce: str | None, base_issuer: str) -> dict[str, Any]:
        grant = self.grants[grant_id]
        now = self.clock()
        access = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0." + self._token()
        lifetime = self.settings.access_token_seconds
        self.access_tokens[access] = (grant_id, now + timedelta(seconds=lifetime))
        api_scopes = [s for s in grant.scopes if s not in RESERVED_SCOPES]
        result: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(api_scopes + [s for s in ("openid", "profile", "offline_access") if s in grant.scopes]),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            # client_info (uid.utid) is what MSAL builds its account from.
            "client_info": _b64url(json.dumps({"uid": USER_OID, "utid": TENANT_ID}).encode()),
        }
        if "offline_access" in grant.scopes:
            refresh = "1.AS" + self._token()
            self.refresh_tokens[refresh] = grant_id
            result["refresh_token"] = refresh
        if "openid" in grant.scopes:
            claims = {
                "aud": grant.client_id,
                "iss": f"{base_issuer}/{TENANT_ID}/v2.0",
                "iat": int(now.timestamp()),
                "nbf": int(now.timestamp()),
                "exp": int((now + timedelta(hours=1)).timestamp()),
                "name": "Sandbox Therapist",
                "oid": USER_OID,
                "preferred_username": USERNAME,
                "sub": hashlib.sha256(USER_OID.encode()).hexdigest()[:43],
                "tid": TENANT_ID,
                "ver": "2.0",
            }
            if nonce is not None:
                claims["nonce"] = nonce
            header = _b64url(json.dumps({"typ": "JWT", "alg": "none"}).encode())
            result["id_token"] = f"{header}.{_b64url(json.dumps(claims).encode())}."
        return result

    def issue_tokens(
        self, scopes: tuple[str, ...] = ("Calendars.ReadWrite", "offline_access", "openid")
    ) -> dict[str, Any]:
        """Tokens of a freshly consented grant, without the browser round trip."""
        with self.lock:
            grant_id = self._id("grant-")
            self.grants[grant_id] = Grant(DEFAULT_CLIENT_ID, scopes)
            return self._tokens(grant_id, nonce=None, base_issuer=self.base_url)

    def revoke_consent(self) -> None:
        """The user (or an admin) withdraws consent: refreshes fail with invalid_grant, tokens stop working."""
        with self.lock:
            for grant in self.grants.values():
                grant.revoked = True

    def expire_access_tokens(self) -> None:
        with self.lock:
            past = self.clock() - timedelta(seconds=1)
            self.access_tokens = {t: (g, past) for t, (g, _) in self.access_tokens.items()}

    def authorize(self, header: str | None, *, write: bool = False) -> None:
        """Check a Graph request's bearer token; raise :class:`GraphError` 401/403."""
        token = header[7:] if header and header.lower().startswith("bearer ") else None
        with self.lock:
            found = self.access_tokens.get(token or "")
            grant = self.grants.get(found[0]) if found else None
            if not token or found is None or grant is None:
                raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
            if found[1] <= self.clock() or grant.revoked:
                raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
            names = {s.removeprefix(GRAPH_SCOPE_PREFIX).lower() for s in grant.scopes}
            wanted = {"calendars.readwrite"} if write else {"calendars.read", "calendars.readwrite"}
            if not names & wanted:
                raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    # ----- the calendar (control API) --------------------------------------------------------

    def _touch(self, event: Event) -> None:
        self._bump(event)
        event.modified = self.clock()
        event.change_key = self._token()[:22]

    def _bump(self, event: Event) -> None:
        """A change to one instance: the series' other instances (and the master's changeKey) stay as they were."""
        self.seq += 1
        event.seq = self.seq

    def seed_event(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an event as a calendar app would (Graph body; ``iCalUId`` may be given here)."""
        with self.lock:
            start, zone_name = parse_datetime_tz(body.get("start"))
            end, _ = parse_datetime_tz(body.get("end"))
            if end < start:
                raise GraphError(400, "ErrorInvalidRequest", "The end time must be after the start time.")
            event = Event(
                id=self._id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A"),
                rest_id=self._id("AAMkAGI2TG93AAA="),
                ical_uid=str(body.get("iCalUId") or "040000008200E00074C5B7101A82E008" + self._token()[:32].upper()),
                subject=str(body.get("subject") or ""),
                start=start,
                end=end,
                zone_name=zone_name,
                change_key="",
                created=self.clock(),
                modified=self.clock(),
                seq=0,
                location=str((body.get("location") or {}).get("displayName") or ""),
                all_day=bool(body.get("isAllDay")),
                recurrence=body.get("recurrence") or None,
                attendees=list(body.get("attendees") or []),
                show_as=str(body.get("showAs") or "busy"),
            )
            self._set_body(event, body.get("body"))
            self._set_online(event, body)
            for prop in body.get("singleValueExtendedProperties") or []:
                event.extended[str(prop["id"])] = str(prop["value"])
            self._touch(event)
            self.events[event.id] = event
            self.rest_ids[event.rest_id] = event.id
            self._notify(event, "created")
            return {"id": event.id, "rest_id": event.rest_id, "iCalUId": event.ical_uid}

    @staticmethod
    def _set_body(event: Event, body: Any) -> None:
        """Store an itemBody as written; HTML as the whole document Outlook keeps."""
        if not body:
            event.body, event.body_type = "", "text"
            return
        if not isinstance(body, dict):
            raise GraphError(400, "RequestBodyRead", "body must be an itemBody object.")
        try:
            kind = content_type_of(body.get("contentType"))
        except BodyError as exc:
            raise GraphError(400, "RequestBodyRead", str(exc)) from None
        content = str(body.get("content") or "")
        event.body_type = kind
        event.body = as_document(content) if kind == "html" and content else content

    def _set_online(self, event: Event, body: dict[str, Any]) -> None:
        if not body.get("isOnlineMeeting") or event.is_online:
            return  # once online, an event stays online with its provider
        if not self.settings.teams_available:
            return  # the tenant has no Teams: the event is saved, isOnlineMeeting stays false
        event.is_online = True
        event.online_provider = "teamsForBusiness"
        event.join_url = (
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_"
            + self._token()[:32]
            + "%40thread.v2/0?context=%7b%22Tid%22%3a%22"
            + TENANT_ID
            + "%22%7d"
        )

    def resolve(self, any_id: str) -> tuple[Event, datetime | None]:
        """The event (and original start, for an instance) an immutable, rest or instance id names."""
        with self.lock:
            parsed = parse_occurrence_id(any_id)
            master_id, original = parsed if parsed else (any_id, None)
            event = self.events.get(master_id) or self.events.get(self.rest_ids.get(master_id, ""))
            if event is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if original is not None and (event.recurrence is None or original in event.deleted_instances):
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return event, original

    def update_event(self, any_id: str, patch: dict[str, Any], if_match: str | None = None) -> None:
        """A PATCH: on an instance id it makes (or changes) an exception."""
        with self.lock:
            event, original = self.resolve(any_id)
            self._check_etag(event, original, if_match)
            if original is not None:
                duration = event.end - event.start
                exception = event.exceptions.get(original) or Exception_(original, original + duration)
                if "start" in patch:
                    exception.start = parse_datetime_tz(patch["start"])[0]
                if "end" in patch:
                    exception.end = parse_datetime_tz(patch["end"])[0]
                if "subject" in patch:
                    exception.subject = str(patch["subject"])
                exception.change_key = self._token()[:22]
                event.exceptions[original] = exception
                self._bump(event)
                self._notify(event, "updated")
                return
            if "start" in patch:
                event.start, event.zone_name = parse_datetime_tz(patch["start"])
            if "end" in patch:
                event.end = parse_datetime_tz(patch["end"])[0]
            if "subject" in patch:
                event.subject = str(patch["subject"])
            if "body" in patch:
                self._set_body(event, patch["body"])
            if "location" in patch:
                event.location = str((patch["location"] or {}).get("displayName") or "")
            if "recurrence" in patch:
                event.recurrence = patch["recurrence"] or None
                event.exceptions.clear()  # Outlook drops exceptions when the pattern changes
                event.deleted_instances.clear()
            if "isCancelled" in patch:
                event.is_cancelled = bool(patch["isCancelled"])
            for prop in patch.get("singleValueExtendedProperties") or []:
                event.extended[str(prop["id"])] = str(prop["value"])
            self._set_online(event, patch)
            if event.end < event.start:
                raise GraphError(400, "ErrorInvalidRequest", "The end time must be after the start time.")
            self._touch(event)
            self._notify(event, "updated")

    def _check_etag(self, event: Event, original: datetime | None, if_match: str | None) -> None:
        if not if_match or if_match == "*":
            return
        if original is not None:
            instance = instance_at(event, original)
            tag = f'W/"{instance.change_key}"' if instance else None
        else:
            tag = f'W/"{event.change_key}"'
        if if_match != tag:
            raise GraphError(
                412,
                "ErrorIrresolvableConflict",
                "The change key passed in the request does not match the current change key for the item.",
            )

    def delete_event(self, any_id: str, if_match: str | None = None) -> None:
        with self.lock:
            event, original = self.resolve(any_id)
            self._check_etag(event, original, if_match)
            if original is not None:
                event.deleted_instances.add(original)
                event.exceptions.pop(original, None)
                self._bump(event)
                self._notify(event, "updated")
                return
            del self.events[event.id]
            self.rest_ids.pop(event.rest_id, None)
            self.seq += 1
            self._notify(event, "deleted")

    def move_to_folder(self, event_id: str) -> str:
        """Move the item to another folder and back: its default (rest) id changes, its immutable id does not."""
        with self.lock:
            event, _ = self.resolve(event_id)
            self.rest_ids.pop(event.rest_id, None)
            event.rest_id = self._id("AAMkAGI2TG93AAA=")
            self.rest_ids[event.rest_id] = event.id
            self._touch(event)
            return event.rest_id

    def instances(self, window: tuple[datetime, datetime]) -> list[Instance]:
        """The calendar view: every instance overlapping ``window``, singles and series expanded."""
        with self.lock:
            out: list[Instance] = []
            cache: dict[tuple[str, int, str], list[Instance]] = {}
            for event in self.events.values():
                # An event's instances change only when it does (its seq moves): reuse them.
                tag = (event.id, event.seq, event.rest_id)
                found = self._instances_cache.get(tag)
                if found is None or found[0] != window:
                    if event.recurrence:
                        listed = series_instances(event, window)
                    elif event.start < window[1] and event.end > window[0]:
                        listed = [single_instance(event)]
                    else:
                        listed = []
                    found = (window, listed)
                cache[tag] = found[1]
                self._instances_cache[tag] = found
                out.extend(found[1])
            # Forget what belongs to older versions of events.
            self._instances_cache = {k: v for k, v in self._instances_cache.items() if k in cache}
            return out

    # ----- change notifications ------------------------------------------------------------------

    def _notify(self, event: Event, change_type: str) -> None:
        now = self.clock()
        for sub in list(self.subscriptions.values()):
            wanted = {c.strip() for c in sub.change_type.split(",")}
            if sub.expiration <= now or sub.resource not in EVENT_RESOURCES or change_type not in wanted:
                continue
            if self.settings.drop_notifications and self.rng.random() < self.settings.drop_notifications:
                continue
            item = notification(sub, change_type, event.id, f'W/"{event.change_key}"', USER_OID, TENANT_ID)
            self.notifier.enqueue(sub.notification_url, item)

    def check_expiration(self, text: Any) -> datetime:
        if not isinstance(text, str):
            raise GraphError(400, "InvalidRequest", "expirationDateTime is required.")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise GraphError(400, "InvalidRequest", "expirationDateTime is not a valid date-time.") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        minutes = self.settings.max_subscription_minutes
        if moment <= self.clock():
            raise GraphError(400, "ExtensionError", "Subscription expiration must be in the future.")
        if moment > max_expiration(self.clock(), minutes):
            raise GraphError(
                400, "ExtensionError", f"Subscription expiration can only be {minutes} minutes in the future."
            )
        return moment

    def add_subscription(self, body: dict[str, Any], expiration: datetime) -> Subscription:
        with self.lock:
            sub = Subscription(
                id=str(uuid.UUID(int=self.rng.getrandbits(128))),
                resource=str(body["resource"]),
                change_type=str(body["changeType"]),
                notification_url=str(body["notificationUrl"]),
                lifecycle_url=body.get("lifecycleNotificationUrl"),
                client_state=body.get("clientState"),
                expiration=expiration,
            )
            self.subscriptions[sub.id] = sub
            return sub

    def subscription(self, sub_id: str) -> Subscription:
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None or sub.expiration <= self.clock():
                raise GraphError(404, "ResourceNotFound", f"The object was not found: subscription {sub_id}.")
            return sub

    def send_lifecycle(self, sub_id: str, event: str) -> None:
        """Emit ``reauthorizationRequired``, ``subscriptionRemoved`` or ``missed`` for a subscription."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            if event == "subscriptionRemoved":
                del self.subscriptions[sub_id]
            if event == "reauthorizationRequired":
                sub.needs_reauthorization = True
            if sub.lifecycle_url:
                self.notifier.enqueue(sub.lifecycle_url, lifecycle(sub, event, TENANT_ID))

    # ----- delta ---------------------------------------------------------------------------------

    def expire_delta_tokens(self) -> int:
        """Forget every delta and skip token (the sync state generation is gone); returns how many."""
        with self.lock:
            count = len(self.delta_tokens) + len(self.skip_tokens)
            self.delta_tokens.clear()
            self.skip_tokens.clear()
            return count

    def start_round(self, window: tuple[datetime, datetime], previous: DeltaState | None, page_size: int) -> str:
        """Compute one delta round (everything when ``previous`` is None); returns its first skip token."""
        with self.lock:
            current = self.instances(window)
            by_id = {i.id: i for i in current}
            versions = {i.id: i.version for i in current}
            items: list[Instance | tuple[str, str]] = []
            if previous is None:
                items.extend(current)
            else:
                items.extend(i for i in current if previous.versions.get(i.id) != i.version)
                items.extend((i, previous.rest_ids.get(i, i)) for i in previous.versions if i not in by_id)
                if self.settings.removed_outside_window:
                    # The docs: items outside the window that changed come as "@removed" too.
                    items.extend(
                        (e.id, e.rest_id)
                        for e in self.events.values()
                        if e.seq > previous.seq
                        and not e.recurrence
                        and e.id not in by_id
                        and e.id not in previous.versions
                    )
                unchanged = [i for i in current if previous.versions.get(i.id) == i.version]
                if self.settings.replays and unchanged:
                    items.extend(self.rng.sample(unchanged, min(self.settings.replays, len(unchanged))))
            if self.settings.shuffle:
                self.rng.shuffle(items)
            token = self._token()
            rest = {i.id: i.rest_id for i in current}
            self.skip_tokens[token] = Paging(items, 0, page_size, DeltaState(window, versions, self.seq, rest))
            return token

    def next_page(self, skip_token: str) -> tuple[list[Instance | tuple[str, str]], str | None, str | None]:
        """(items, next skip token, delta token): exactly one of the two tokens is set."""
        with self.lock:
            paging = self.skip_tokens.pop(skip_token, None)
            if paging is None:
                raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
            if self.settings.empty_pages and self.rng.random() < self.settings.empty_pages:
                again = self._token()
                self.skip_tokens[again] = paging
                return [], again, None
            chunk = paging.items[paging.offset : paging.offset + paging.page_size]
            paging.offset += len(chunk)
            if paging.offset < len(paging.items):
                following = self._token()
                self.skip_tokens[following] = paging
                return chunk, following, None
            delta = self._token()
            self.delta_tokens[delta] = paging.delta
            return chunk, None, delta

    def delta_state(self, token: str) -> DeltaState:
        with self.lock:
            state = self.delta_tokens.get(token)
            if state is None:
                raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
            return state


__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "TENANT_ID",
    "USERNAME",
    "USER_OID",
    "DeltaState",
    "Fault",
    "GraphError",
    "OAuthFailure",
    "OutlookState",
    "RequestRecord",
    "Settings",
]

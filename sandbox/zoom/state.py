"""The emulated Zoom world: apps, users, tokens, meetings, rate limits and injected faults.

Written from Zoom's public documentation (developers.zoom.us: Server-to-Server OAuth, OAuth for
user-level apps, Meetings API, rate limits, webhooks; summarised in shared/reference/providers.md
section 3). Everything is in memory behind one lock; the clock is injectable so tests can age
tokens and cross midnight UTC without sleeping.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ACCOUNT_ID = "emu-account"
DEFAULT_CLIENT_ID = "emu-s2s-client"
DEFAULT_CLIENT_SECRET = "emu-s2s-secret"
DEFAULT_USER_EMAIL = "therapist@practice.example"
DEFAULT_WEBHOOK_SECRET = "emu-webhook-secret-token"

# The message Zoom returns when a host exceeds 100 create/update requests in a day (devforum t/19474).
DAILY_LIMIT_MESSAGE = (
    "You have exceeded the daily rate limit ({limit}) of Meeting Create/Update API requests permitted for this "
    "particular user. You may resume these requests at GMT 00:00:00."
)


class ZoomError(Exception):
    """An error answered in Zoom's shape: ``{"code": int, "message": str}`` with an HTTP status."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class OAuthFailure(Exception):
    """An error of the token endpoint: ``{"reason", "error"}`` plus Zoom's numeric code."""

    def __init__(self, status: int, error: str, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.code = code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": self.reason, "error": self.error}
        if self.code is not None:
            body["code"] = self.code
        return body


@dataclass
class Settings:
    """Knobs a test may turn (all also settable over the control API)."""

    token_ttl: int = 3600
    # Meeting create/update requests per host per UTC day (Zoom: 100).
    daily_limit: int = 100
    # Create requests per second per account (Zoom "Medium": 20/s on Pro); None = unlimited.
    qps_limit: int | None = None
    # Zoom documents X-RateLimit-* and Retry-After headers on 429, but users see them missing on
    # the per-user daily limit: both behaviours are reproducible.
    rate_limit_headers: bool = True
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_url: str | None = None
    # Zoom retries an unanswered delivery after 5, 20 and 60 minutes; compressible for tests.
    webhook_retry_delays: tuple[float, ...] = (300.0, 1200.0, 3600.0)
    webhook_timeout: float = 3.0
    # Seconds a create waits AFTER the meeting exists and before it answers: the window in which a
    # crash test kills the client ("create sent, id not stored").
    create_delay: float = 0.0
    # Seconds a refresh grant waits AFTER rotating the refresh token and before answering: the
    # window in which a second worker holding the same (now dead) refresh token races the first.
    refresh_delay: float = 0.0


@dataclass
class S2SApp:
    account_id: str
    client_id: str
    client_secret: str
    active: bool = True


@dataclass
class UserApp:
    """A user-level OAuth app (authorization code grant, rotating refresh tokens)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class User:
    id: str
    email: str
    timezone: str
    account_id: str


@dataclass
class AccessToken:
    value: str
    expires_at: datetime
    account_id: str
    # None for an account (S2S) token: it may act for any user of the account.
    user_id: str | None


@dataclass
class Meeting:
    id: int
    uuid: str
    host_id: str
    topic: str
    type: int
    start_time: datetime  # aware UTC
    duration: int
    timezone: str
    agenda: str
    password: str
    settings: dict[str, Any]
    created_at: datetime
    status: str = "waiting"

    def join_url(self) -> str:
        return f"https://zoom.us/j/{self.id}?pwd={_pwd_token(self.password)}"

    def public(self, base_url: str) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "id": self.id,
            "host_id": self.host_id,
            "topic": self.topic,
            "type": self.type,
            "status": self.status,
            "start_time": zoom_time(self.start_time),
            "duration": self.duration,
            "timezone": self.timezone,
            "agenda": self.agenda,
            "created_at": zoom_time(self.created_at),
            "start_url": f"https://zoom.us/s/{self.id}?zak={secrets.token_urlsafe(24)}",
            "join_url": self.join_url(),
            "password": self.password,
            "h323_password": self.password,
            "encrypted_password": _pwd_token(self.password),
            "settings": dict(self.settings),
            "pre_schedule": False,
        }


@dataclass
class Fault:
    """Answer the next ``times`` matching requests with this error instead of serving them."""

    status: int
    code: int
    message: str
    method: str | None = None
    path_prefix: str | None = None
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)


def zoom_time(value: datetime) -> str:
    """Zoom's UTC timestamp format, ``yyyy-MM-ddTHH:mm:ssZ``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pwd_token(password: str) -> str:
    return base64.urlsafe_b64encode(password.encode()).decode().rstrip("=")


def parse_start_time(value: Any, timezone: str) -> datetime:
    """Zoom's rule: a trailing ``Z`` means UTC; without it the time is local in ``timezone``."""
    if not isinstance(value, str):
        raise ZoomError(400, 300, "Invalid field: start_time")
    text = value.strip()
    try:
        if text.endswith("Z"):
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        naive = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ZoomError(400, 300, f"Invalid start_time: {value}") from None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ZoomError(400, 300, f"Invalid timezone: {timezone}") from None
    return naive.replace(tzinfo=zone).astimezone(UTC)


_PASSCODE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@-_*")


class ZoomState:
    """The whole emulated Zoom: every public method takes the lock."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        seed: int | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.base_url = ""
        self._next_meeting_id = 81234567890 + (seed or 0) * 1000
        self.s2s_apps: dict[str, S2SApp] = {}
        self.user_apps: dict[str, UserApp] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # refresh token -> (client_id, user_id)
        self.codes: dict[str, tuple[str, str, str]] = {}  # code -> (client_id, user_id, redirect_uri)
        self.meetings: dict[int, Meeting] = {}
        self.deleted_ids: set[int] = set()
        self.faults: list[Fault] = []
        self.daily_counts: dict[tuple[str, date], int] = {}
        self.second_counts: dict[tuple[str, int], int] = {}
        # Counters tests and benchmarks read: tokens issued, requests by (method, route kind).
        self.tokens_issued = 0
        self.requests: list[tuple[str, str, int]] = []
        self.add_s2s_app(DEFAULT_ACCOUNT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        self.default_user = self.add_user(DEFAULT_USER_EMAIL, "Europe/Madrid")

    # -- setup -----------------------------------------------------------------------------
    def add_s2s_app(self, account_id: str, client_id: str, client_secret: str) -> S2SApp:
        with self.lock:
            app = S2SApp(account_id, client_id, client_secret)
            self.s2s_apps[client_id] = app
            return app

    def add_user_app(self, client_id: str, client_secret: str, redirect_uris: tuple[str, ...]) -> UserApp:
        with self.lock:
            app = UserApp(client_id, client_secret, redirect_uris)
            self.user_apps[client_id] = app
            return app

    def add_user(self, email: str, timezone: str = "UTC", account_id: str = DEFAULT_ACCOUNT_ID) -> User:
        with self.lock:
            user = User(
                id=secrets.token_urlsafe(16).replace("-", "x").replace("_", "y"),
                email=email,
                timezone=timezone,
                account_id=account_id,
            )
            self.users[user.id] = user
            return user

    def deactivate_app(self, client_id: str) -> None:
        """The app was deactivated: its tokens die and it gets no new ones."""
        with self.lock:
            app = self.s2s_apps.get(client_id)
            if app is not None:
                app.active = False
            self.tokens = {k: t for k, t in self.tokens.items() if not self._token_of_client(t, client_id)}

    def _token_of_client(self, token: AccessToken, client_id: str) -> bool:
        app = self.s2s_apps.get(client_id)
        return app is not None and token.user_id is None and token.account_id == app.account_id

    # -- OAuth -----------------------------------------------------------------------------
    def _mint(self, account_id: str, user_id: str | None) -> dict[str, Any]:
        value = "emu." + secrets.token_urlsafe(32)
        self.tokens[value] = AccessToken(
            value, self.clock() + timedelta(seconds=self.settings.token_ttl), account_id, user_id
        )
        self.tokens_issued += 1
        return {
            "access_token": value,
            "token_type": "bearer",
            "expires_in": self.settings.token_ttl,
            "scope": "meeting:read:admin meeting:write:admin",
        }

    def account_token(self, client_id: str, client_secret: str, account_id: str | None) -> dict[str, Any]:
        with self.lock:
            app = self.s2s_apps.get(client_id)
            if app is None or not secrets.compare_digest(app.client_secret, client_secret):
                raise OAuthFailure(400, "invalid_client", "Invalid client_id or client_secret", 4702)
            if not account_id:
                raise OAuthFailure(400, "invalid_request", "Missing account_id", 4706)
            if account_id != app.account_id:
                raise OAuthFailure(400, "invalid_request", "Invalid account_id", 4706)
            if not app.active:
                raise OAuthFailure(400, "invalid_client", "The app has been deactivated", 4702)
            return self._mint(app.account_id, None)

    def authorize(self, client_id: str, redirect_uri: str, user_id: str | None = None) -> str:
        """The user approved the app: a one-time code for ``redirect_uri``."""
        with self.lock:
            app = self.user_apps.get(client_id)
            if app is None:
                raise OAuthFailure(400, "invalid_client", "Invalid client_id", 4702)
            if redirect_uri not in app.redirect_uris:
                raise OAuthFailure(400, "invalid_request", "Invalid redirect uri", 4700)
            code = secrets.token_urlsafe(24)
            self.codes[code] = (client_id, user_id or self.default_user.id, redirect_uri)
            return code

    def _user_app(self, client_id: str, client_secret: str) -> UserApp:
        app = self.user_apps.get(client_id)
        if app is None or not secrets.compare_digest(app.client_secret, client_secret):
            raise OAuthFailure(400, "invalid_client", "Invalid client_id or client_secret", 4702)
        return app

    def _user_tokens(self, client_id: str, user_id: str) -> dict[str, Any]:
        body = self._mint(self.users[user_id].account_id, user_id)
        refresh = "emu.r." + secrets.token_urlsafe(32)
        self.refresh_tokens[refresh] = (client_id, user_id)
        body["refresh_token"] = refresh
        return body

    def code_token(self, client_id: str, client_secret: str, code: str, redirect_uri: str) -> dict[str, Any]:
        with self.lock:
            self._user_app(client_id, client_secret)
            grant = self.codes.pop(code, None)
            if grant is None or grant[0] != client_id:
                raise OAuthFailure(400, "invalid_grant", "Invalid authorization code", 4702)
            if grant[2] != redirect_uri:
                raise OAuthFailure(400, "invalid_grant", "Redirect URI mismatch.", 4702)
            return self._user_tokens(client_id, grant[1])

    def refresh(self, client_id: str, client_secret: str, refresh_token: str) -> dict[str, Any]:
        """Zoom rotates refresh tokens: the old one stops working once a new one is issued."""
        with self.lock:
            self._user_app(client_id, client_secret)
            grant = self.refresh_tokens.pop(refresh_token, None)
            if grant is None or grant[0] != client_id:
                raise OAuthFailure(400, "invalid_grant", "Invalid Token!", 4702)
            return self._user_tokens(client_id, grant[1])

    def revoke_user_grants(self, client_id: str) -> None:
        """The user removed the app: refresh and access tokens stop working."""
        with self.lock:
            users = {u for c, u in self.refresh_tokens.values() if c == client_id}
            self.refresh_tokens = {k: v for k, v in self.refresh_tokens.items() if v[0] != client_id}
            self.tokens = {k: t for k, t in self.tokens.items() if t.user_id not in users}

    def expire_tokens(self) -> None:
        """Every access token lapses now (as after an hour)."""
        with self.lock:
            past = self.clock() - timedelta(seconds=1)
            for token in self.tokens.values():
                token.expires_at = past

    def authenticate(self, authorization: str | None) -> AccessToken:
        with self.lock:
            if not authorization or not authorization.lower().startswith("bearer "):
                raise ZoomError(401, 124, "Invalid access token.")
            token = self.tokens.get(authorization[7:].strip())
            if token is None:
                raise ZoomError(401, 124, "Invalid access token.")
            if token.expires_at <= self.clock():
                raise ZoomError(401, 124, "Access token is expired.")
            return token

    # -- faults and limits -----------------------------------------------------------------
    def inject_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method not in (None, method) or (fault.path_prefix and not path.startswith(fault.path_prefix)):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    def _count_write(self, host_id: str, is_create: bool) -> None:
        now = self.clock().astimezone(UTC)
        headers = self.settings.rate_limit_headers
        if is_create and self.settings.qps_limit is not None:
            key = (self.users[host_id].account_id, int(now.timestamp()))
            used = self.second_counts.get(key, 0)
            if used >= self.settings.qps_limit:
                raise ZoomError(
                    429,
                    429,
                    "You have reached the maximum per-second rate limit for this API. Try again later.",
                    {"X-RateLimit-Category": "Medium", "X-RateLimit-Type": "QPS", "Retry-After": "1"}
                    if headers
                    else {},
                )
            self.second_counts[key] = used + 1
        day_key = (host_id, now.date())
        used = self.daily_counts.get(day_key, 0)
        if used >= self.settings.daily_limit:
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
            extra = (
                {
                    "X-RateLimit-Type": "Daily-limit",
                    "X-RateLimit-Limit": str(self.settings.daily_limit),
                    "X-RateLimit-Remaining": "0",
                    "Retry-After": midnight.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                if headers
                else {}
            )
            raise ZoomError(429, 429, DAILY_LIMIT_MESSAGE.format(limit=self.settings.daily_limit), extra)
        self.daily_counts[day_key] = used + 1

    # -- meetings --------------------------------------------------------------------------
    def _resolve_user(self, token: AccessToken, user_ref: str) -> User:
        if user_ref == "me":
            if token.user_id is None:
                # S2S tokens have no "me" (Zoom answers 1001 for it).
                raise ZoomError(404, 1001, "User does not exist: me.")
            return self.users[token.user_id]
        user = self.users.get(user_ref) or next((u for u in self.users.values() if u.email == user_ref), None)
        if user is None or user.account_id != token.account_id:
            raise ZoomError(404, 1001, f"User does not exist: {user_ref}.")
        if token.user_id is not None and token.user_id != user.id:
            raise ZoomError(400, 200, "No permission.")
        return user

    def _meeting_for(self, token: AccessToken, meeting_id: str) -> Meeting:
        try:
            mid = int(meeting_id)
        except ValueError:
            raise ZoomError(404, 3001, f"Meeting does not exist: {meeting_id}.") from None
        meeting = self.meetings.get(mid)
        if meeting is None:
            raise ZoomError(404, 3001, f"Meeting does not exist: {meeting_id}.")
        host = self.users[meeting.host_id]
        if host.account_id != token.account_id or (token.user_id is not None and token.user_id != host.id):
            raise ZoomError(404, 3001, f"Meeting does not exist: {meeting_id}.")
        return meeting

    def _validate(self, body: dict[str, Any], meeting: Meeting | None, user: User) -> dict[str, Any]:
        out: dict[str, Any] = {}
        topic = body.get("topic", meeting.topic if meeting else "Zoom Meeting")
        if not isinstance(topic, str) or len(topic) > 200:
            raise ZoomError(400, 300, "Invalid field: topic")
        out["topic"] = topic
        mtype = body.get("type", meeting.type if meeting else 2)
        if mtype not in (1, 2, 3, 8):
            raise ZoomError(400, 300, "Invalid field: type")
        out["type"] = mtype
        timezone = body.get("timezone", meeting.timezone if meeting else user.timezone)
        if not isinstance(timezone, str):
            raise ZoomError(400, 300, "Invalid field: timezone")
        out["timezone"] = timezone
        if "start_time" in body:
            out["start_time"] = parse_start_time(body["start_time"], timezone)
        elif meeting is not None:
            out["start_time"] = meeting.start_time
        else:
            out["start_time"] = self.clock().replace(microsecond=0)
        duration = body.get("duration", meeting.duration if meeting else 60)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
            raise ZoomError(400, 300, "Invalid field: duration")
        out["duration"] = duration
        agenda = body.get("agenda", meeting.agenda if meeting else "")
        if not isinstance(agenda, str) or len(agenda) > 2000:
            raise ZoomError(400, 300, "Invalid field: agenda")
        out["agenda"] = agenda
        password = body.get("password", meeting.password if meeting else secrets.token_hex(3))
        if not isinstance(password, str) or len(password) > 10 or not set(password) <= _PASSCODE_CHARS:
            raise ZoomError(400, 300, "Invalid field: password")
        out["password"] = password
        settings = (
            dict(meeting.settings)
            if meeting
            else {
                "host_video": False,
                "participant_video": False,
                "join_before_host": False,
                "mute_upon_entry": False,
                "waiting_room": False,
                "auto_recording": "none",
                "approval_type": 2,
            }
        )
        given = body.get("settings", {})
        if not isinstance(given, dict):
            raise ZoomError(400, 300, "Invalid field: settings")
        settings.update(given)
        out["settings"] = settings
        return out

    def create_meeting(self, token: AccessToken, user_ref: str, body: dict[str, Any]) -> Meeting:
        with self.lock:
            user = self._resolve_user(token, user_ref)
            fields = self._validate(body, None, user)
            self._count_write(user.id, is_create=True)
            mid = self._next_meeting_id
            self._next_meeting_id += 7
            # Instance uuids are base64 of 16 bytes; some contain "/" (double-encode in paths).
            uuid = base64.b64encode(secrets.token_bytes(16)).decode()
            meeting = Meeting(
                id=mid, uuid=uuid, host_id=user.id, created_at=self.clock().replace(microsecond=0), **fields
            )
            self.meetings[mid] = meeting
            return meeting

    def list_meetings(self, token: AccessToken, user_ref: str) -> list[Meeting]:
        with self.lock:
            user = self._resolve_user(token, user_ref)
            return sorted((m for m in self.meetings.values() if m.host_id == user.id), key=lambda m: m.id)

    def get_meeting(self, token: AccessToken, meeting_id: str) -> Meeting:
        with self.lock:
            return self._meeting_for(token, meeting_id)

    def update_meeting(self, token: AccessToken, meeting_id: str, body: dict[str, Any]) -> None:
        with self.lock:
            meeting = self._meeting_for(token, meeting_id)
            fields = self._validate(body, meeting, self.users[meeting.host_id])
            self._count_write(meeting.host_id, is_create=False)
            for key, value in fields.items():
                setattr(meeting, key, value)

    def delete_meeting(self, token: AccessToken, meeting_id: str) -> Meeting:
        with self.lock:
            meeting = self._meeting_for(token, meeting_id)
            if meeting.status == "started":
                raise ZoomError(400, 3002, "Sorry, you cannot delete this meeting since it is in progress.")
            del self.meetings[meeting.id]
            self.deleted_ids.add(meeting.id)
            return meeting

    def delete_by_host(self, meeting_id: int) -> Meeting:
        """The therapist deletes the meeting in Zoom's own app (outside Alliance)."""
        with self.lock:
            meeting = self.meetings.pop(meeting_id)
            self.deleted_ids.add(meeting_id)
            return meeting

    def set_status(self, meeting_id: int, status: str) -> Meeting:
        with self.lock:
            meeting = self.meetings[meeting_id]
            meeting.status = status
            return meeting

    def log_request(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.requests.append((method, path, status))

    def count_requests(self, method: str, path_contains: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and path_contains in p)

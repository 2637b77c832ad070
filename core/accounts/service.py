"""Therapist accounts: passwords, one-time setup links, API tokens, web sessions, login limits.

Callers get ids and opaque secrets back; nothing here logs or returns an e-mail address except
the listings a therapist or operator asked for.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.accounts.models import ApiToken, LoginFailure, PasswordSetupToken, TherapistPassword, WebSession
from core.store.db import Store
from core.store.models import Therapist

logger = logging.getLogger(__name__)

API_TOKEN_PREFIX = "alliance_"
SETUP_LINK_TTL = timedelta(hours=24)
SESSION_TTL = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 would take more, but a megabyte "password" is a DoS, not a password
# How often a token's last_used_at is refreshed: a write per request would serialise SQLite readers.
_LAST_USED_RESOLUTION = timedelta(minutes=1)

_hasher = PasswordHasher()  # argon2id with the RFC 9106 "low memory" profile (argon2-cffi's default)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so an unknown e-mail costs as much as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AccountError(Exception):
    """Base class of the account errors a caller turns into a message."""


class AccountExists(AccountError):
    """A therapist with this e-mail address already exists."""


class UnknownAccount(AccountError):
    """No therapist with this e-mail address or id."""


class WeakPassword(AccountError):
    """The password does not meet the policy; the message says why (never the password)."""


class InvalidLink(AccountError):
    """A setup link that is unknown, expired or already used."""


class InvalidCredentials(AccountError):
    """E-mail and password do not match an account with a password."""


class RateLimited(AccountError):
    """Too many failed logins for this account or address; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoginPolicy:
    """How many failed logins are allowed per account and per client address in one window."""

    max_per_account: int = 5
    max_per_address: int = 20
    window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class TherapistView:
    id: int
    email: str
    display_name: str
    timezone: str
    has_password: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiTokenView:
    id: int
    therapist_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewApiToken:
    """A freshly created token; ``token`` is shown once and never stored."""

    id: int
    prefix: str
    token: str


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Trimmed and lower-cased; raises ``AccountError`` for something that is not an address."""
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or not domain or any(c.isspace() for c in value) or len(value) > 320:
        raise AccountError("not an e-mail address")
    return value


def check_password_policy(password: str) -> None:
    """Raise ``WeakPassword`` unless ``password`` is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


# -- therapists ---------------------------------------------------------------------------------


def create_therapist(store: Store, email: str, *, display_name: str = "", timezone: str = "UTC") -> int:
    """Create a therapist account (without a password) and return its id."""
    address = normalize_email(email)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise AccountError(f"unknown IANA time zone {timezone!r} (e.g. Europe/Madrid)") from None
    try:
        with store.session() as session:
            if session.scalar(select(Therapist.id).where(func.lower(Therapist.email) == address)) is not None:
                raise AccountExists("a therapist with this e-mail address already exists")
            therapist = Therapist(email=address, display_name=display_name, timezone=timezone)
            session.add(therapist)
            session.flush()
            logger.info("therapist %s created", therapist.id)
            return therapist.id
    except IntegrityError:  # a concurrent create of the same address
        raise AccountExists("a therapist with this e-mail address already exists") from None


def find_therapist(store: Store, email: str) -> int:
    """The id of the therapist with ``email``; raises ``UnknownAccount``."""
    address = normalize_email(email)
    with store.session() as session:
        therapist_id = session.scalar(select(Therapist.id).where(func.lower(Therapist.email) == address))
    if therapist_id is None:
        raise UnknownAccount("no therapist with this e-mail address")
    return therapist_id


def get_therapist(store: Store, therapist_id: int) -> TherapistView:
    """One therapist; raises ``UnknownAccount``."""
    with store.session() as session:
        therapist = session.get(Therapist, therapist_id)
        if therapist is None:
            raise UnknownAccount("no such therapist")
        has_password = session.get(TherapistPassword, therapist_id) is not None
        return _therapist_view(therapist, has_password)


def list_therapists(store: Store) -> list[TherapistView]:
    """Every therapist, oldest first (an operator listing)."""
    with store.session() as session:
        with_password = set(session.scalars(select(TherapistPassword.therapist_id)))
        return [
            _therapist_view(t, t.id in with_password) for t in session.scalars(select(Therapist).order_by(Therapist.id))
        ]


def _therapist_view(t: Therapist, has_password: bool) -> TherapistView:
    return TherapistView(t.id, t.email, t.display_name, t.timezone, has_password, t.created_at)


# -- passwords ----------------------------------------------------------------------------------


def _store_password(session: Session, therapist_id: int, password: str, now: datetime) -> None:
    check_password_policy(password)
    digest = _hasher.hash(password)
    row = session.get(TherapistPassword, therapist_id)
    if row is None:
        session.add(TherapistPassword(therapist_id=therapist_id, password_hash=digest, updated_at=now))
    else:
        row.password_hash = digest
        row.updated_at = now
    # A new password signs every browser out: whoever knew the old one keeps no session.
    session.execute(delete(WebSession).where(WebSession.therapist_id == therapist_id))


def set_password(store: Store, therapist_id: int, password: str, *, now: datetime | None = None) -> None:
    """Set (or replace) a therapist's password; ends the therapist's web sessions."""
    with store.session() as session:
        if session.get(Therapist, therapist_id) is None:
            raise UnknownAccount("no such therapist")
        _store_password(session, therapist_id, password, _now(now))
    logger.info("password set for therapist %s", therapist_id)


# -- setup links --------------------------------------------------------------------------------


def create_setup_token(
    store: Store, therapist_id: int, *, ttl: timedelta = SETUP_LINK_TTL, now: datetime | None = None
) -> str:
    """A new one-time setup token (256 bits); earlier unused tokens of the therapist stop working."""
    at = _now(now)
    token = secrets.token_urlsafe(32)
    with store.session() as session:
        if session.get(Therapist, therapist_id) is None:
            raise UnknownAccount("no such therapist")
        session.execute(
            update(PasswordSetupToken)
            .where(PasswordSetupToken.therapist_id == therapist_id, PasswordSetupToken.used_at.is_(None))
            .values(used_at=at)
        )
        session.add(
            PasswordSetupToken(therapist_id=therapist_id, token_hash=_digest(token), created_at=at, expires_at=at + ttl)
        )
    logger.info("setup link issued for therapist %s", therapist_id)
    return token


def _live_setup_token(session: Session, token: str, at: datetime) -> PasswordSetupToken | None:
    row = session.scalar(select(PasswordSetupToken).where(PasswordSetupToken.token_hash == _digest(token)))
    if row is None or row.used_at is not None or row.expires_at <= at:
        return None
    return row


def setup_token_therapist(store: Store, token: str, *, now: datetime | None = None) -> int:
    """The therapist a still-valid setup token belongs to; raises ``InvalidLink``."""
    with store.session() as session:
        row = _live_setup_token(session, token, _now(now))
        if row is None:
            raise InvalidLink("this link is invalid, expired or already used")
        return row.therapist_id


def use_setup_token(store: Store, token: str, password: str, *, now: datetime | None = None) -> int:
    """Set the password through a setup token, consuming it; returns the therapist id."""
    at = _now(now)
    check_password_policy(password)  # before consuming the link, so a typo does not burn it
    with store.session() as session:
        row = _live_setup_token(session, token, at)
        if row is None:
            raise InvalidLink("this link is invalid, expired or already used")
        # Conditional update: of two concurrent uses exactly one sees rowcount 1.
        consumed = session.execute(
            update(PasswordSetupToken)
            .where(PasswordSetupToken.id == row.id, PasswordSetupToken.used_at.is_(None))
            .values(used_at=at)
            .execution_options(synchronize_session=False)
        )
        if consumed.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
            raise InvalidLink("this link is invalid, expired or already used")
        _store_password(session, row.therapist_id, password, at)
        therapist_id = row.therapist_id
    logger.info("password set through a setup link for therapist %s", therapist_id)
    return therapist_id


# -- login ---------------------------------------------------------------------------------------


def _failure_key(kind: str, value: str) -> str:
    return _digest(f"{kind}|{value}")


def _retry_after(session: Session, key: str, limit: int, policy: LoginPolicy, at: datetime) -> int | None:
    since = at - policy.window
    times = list(
        session.scalars(
            select(LoginFailure.at)
            .where(LoginFailure.key_hash == key, LoginFailure.at > since)
            .order_by(LoginFailure.at.desc())
            .limit(limit)
        )
    )
    if len(times) < limit:
        return None
    # Blocked until the oldest of the last ``limit`` failures leaves the window.
    return max(1, int((times[-1] + policy.window - at).total_seconds()) + 1)


def authenticate(
    store: Store,
    email: str,
    password: str,
    address: str,
    *,
    policy: LoginPolicy | None = None,
    now: datetime | None = None,
) -> int:
    """Check a login; returns the therapist id, or raises ``RateLimited`` / ``InvalidCredentials``.

    The limit is checked before the password, so a blocked account answers the same whether or
    not the password is right.
    """
    policy = policy or LoginPolicy()
    at = _now(now)
    try:
        address_email = normalize_email(email)
    except AccountError:
        address_email = email.strip().lower()
    account_key = _failure_key("account", address_email)
    address_key = _failure_key("address", address)
    with store.session() as session:
        waits = [
            _retry_after(session, account_key, policy.max_per_account, policy, at),
            _retry_after(session, address_key, policy.max_per_address, policy, at),
        ]
        blocked = [w for w in waits if w is not None]
        if blocked:
            logger.warning("login refused: rate limited")
            raise RateLimited(max(blocked))
        row = session.execute(
            select(Therapist.id, TherapistPassword.password_hash)
            .join(TherapistPassword, TherapistPassword.therapist_id == Therapist.id)
            .where(func.lower(Therapist.email) == address_email)
        ).first()
    therapist_id, digest = (row[0], row[1]) if row is not None else (None, _dummy_hash())
    ok = False
    if len(password) <= MAX_PASSWORD_LENGTH:
        try:
            ok = _hasher.verify(digest, password) and therapist_id is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
    if not ok or therapist_id is None:
        with store.session() as session:  # committed before raising: the failure must count
            session.add(LoginFailure(kind="account", key_hash=account_key, at=at))
            session.add(LoginFailure(kind="address", key_hash=address_key, at=at))
            # Old rows are useless; dropping them here keeps the table small without a job.
            session.execute(delete(LoginFailure).where(LoginFailure.at < at - policy.window))
        logger.info("login failed")
        raise InvalidCredentials("wrong e-mail address or password")
    with store.session() as session:
        # A success clears the account's count; the address keeps its, so one known account
        # cannot be used to reset the limit while guessing others.
        session.execute(delete(LoginFailure).where(LoginFailure.key_hash == account_key))
        if _hasher.check_needs_rehash(digest):
            session.execute(
                update(TherapistPassword)
                .where(TherapistPassword.therapist_id == therapist_id)
                .values(password_hash=_hasher.hash(password))
            )
    logger.info("therapist %s signed in", therapist_id)
    return therapist_id


# -- web sessions --------------------------------------------------------------------------------


def start_session(store: Store, therapist_id: int, *, ttl: timedelta = SESSION_TTL, now: datetime | None = None) -> str:
    """Create a web session and return its secret (the cookie value)."""
    at = _now(now)
    secret = secrets.token_urlsafe(32)
    with store.session() as session:
        session.add(
            WebSession(therapist_id=therapist_id, secret_hash=_digest(secret), created_at=at, expires_at=at + ttl)
        )
        # Expired sessions of this therapist go when a new one starts (no job needed).
        session.execute(delete(WebSession).where(WebSession.therapist_id == therapist_id, WebSession.expires_at <= at))
    return secret


def resolve_session(store: Store, secret: str, *, now: datetime | None = None) -> int | None:
    """The therapist of a live session, or None for an unknown or expired one."""
    with store.session() as session:
        row = session.scalar(select(WebSession).where(WebSession.secret_hash == _digest(secret)))
        if row is None or row.expires_at <= _now(now):
            return None
        return row.therapist_id


def end_session(store: Store, secret: str) -> None:
    """Sign a browser out: its session row is deleted, so the cookie stops working everywhere."""
    with store.session() as session:
        session.execute(delete(WebSession).where(WebSession.secret_hash == _digest(secret)))


# -- API tokens ----------------------------------------------------------------------------------


def create_api_token(store: Store, therapist_id: int, name: str = "", *, now: datetime | None = None) -> NewApiToken:
    """A new personal API token (256 bits); the secret is returned once and stored hashed."""
    body = secrets.token_urlsafe(32)
    token = API_TOKEN_PREFIX + body
    prefix = body[:8]
    with store.session() as session:
        if session.get(Therapist, therapist_id) is None:
            raise UnknownAccount("no such therapist")
        row = ApiToken(
            therapist_id=therapist_id,
            name=name.strip()[:100],
            prefix=prefix,
            token_hash=_digest(token),
            created_at=_now(now),
        )
        session.add(row)
        session.flush()
        token_id = row.id
    logger.info("api token %s created for therapist %s", token_id, therapist_id)
    return NewApiToken(token_id, prefix, token)


def list_api_tokens(store: Store, therapist_id: int | None = None) -> list[ApiTokenView]:
    """Tokens of one therapist (or all, for the operator), oldest first; never the secrets."""
    query = select(ApiToken).order_by(ApiToken.id)
    if therapist_id is not None:
        query = query.where(ApiToken.therapist_id == therapist_id)
    with store.session() as session:
        return [
            ApiTokenView(t.id, t.therapist_id, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at)
            for t in session.scalars(query)
        ]


def revoke_api_token(
    store: Store, token_id: int, *, therapist_id: int | None = None, now: datetime | None = None
) -> bool:
    """Revoke a token; scoped to ``therapist_id`` when given. False when there is no such token."""
    with store.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None or (therapist_id is not None and row.therapist_id != therapist_id):
            return False
        if row.revoked_at is None:
            row.revoked_at = _now(now)
    logger.info("api token %s revoked", token_id)
    return True


# Built once: every authenticated API request runs it (core.store.db.Store.reader).
_TOKEN_LOOKUP = select(
    ApiToken.id, ApiToken.therapist_id, ApiToken.token_hash, ApiToken.revoked_at, ApiToken.last_used_at
).where(ApiToken.token_hash == bindparam("digest"))


def resolve_api_token(store: Store, token: str, *, now: datetime | None = None) -> int | None:
    """The therapist a live API token belongs to, or None (unknown, tampered or revoked)."""
    if not token.startswith(API_TOKEN_PREFIX) or len(token) > 200:
        return None
    at = _now(now)
    digest = _digest(token)
    with store.reader() as connection:
        row = connection.execute(_TOKEN_LOOKUP, {"digest": digest}).first()
    # The lookup is by hash; compare_digest guards the equality against timing all the same.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.last_used_at is None or at - row.last_used_at >= _LAST_USED_RESOLUTION:
        # At most one write a minute per token: "last used" is for the therapist's token list.
        with store.session() as session:
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=at))
    therapist_id: int = row.therapist_id
    return therapist_id

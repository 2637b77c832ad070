"""Tables of therapist accounts: passwords, setup links, API tokens, web sessions, login failures.

Every secret a person or program presents (setup link, API token, session cookie) is stored only as
its SHA-256: the values are >= 256-bit random, so a fast hash is enough and a database dump never
yields a usable credential. Passwords are low-entropy and get argon2id instead.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class TherapistPassword(Base):
    """The argon2id hash of a therapist's password; no row means no password set yet.

    A table of its own (not columns on ``therapists``) so that accounts stay one module and a
    therapist created by the mirror (``alliance connect``) needs no migration of its row.
    """

    __tablename__ = "therapist_passwords"

    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PasswordSetupToken(Base):
    """A one-time password-setup link: hashed, time-bound, single use."""

    __tablename__ = "password_setup_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ApiToken(Base):
    """A personal API token; ``prefix`` identifies it in listings, the secret is only hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class WebSession(Base):
    """A signed-in browser: the cookie holds the secret, the row only its hash."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LoginFailure(Base):
    """One failed login, counted per account and per client address (hashed: no e-mail or IP at rest).

    In the database rather than in memory so the limit holds across web processes.
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key_hash", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "account" or "address"
    kind: Mapped[str] = mapped_column(String(10))
    key_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

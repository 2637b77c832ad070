"""Tables of the keyring: wrapped data keys and master-key checks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class DataKey(Base):
    """A per-owner data key, wrapped by a master key version or by a parent data key.

    ``wrapped`` becomes NULL when the key is destroyed (crypto-shredding): everything encrypted
    under it is unrecoverable from then on. An owner has one current key; ``alliance keys
    reencrypt`` gives it a new one and marks the old one ``superseded_at`` (it still decrypts
    what was sealed under it until the payloads are re-encrypted).
    """

    __tablename__ = "data_keys"
    __table_args__ = (
        Index("ix_data_keys_owner", "owner_kind", "owner_id"),
        Index(
            "ix_data_keys_current_owner",
            "owner_kind",
            "owner_id",
            unique=True,
            sqlite_where=text("superseded_at IS NULL"),
            postgresql_where=text("superseded_at IS NULL"),
        ),
    )

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[int] = mapped_column(Integer)
    parent_kid: Mapped[str | None] = mapped_column(ForeignKey("data_keys.kid"), nullable=True)
    master_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    superseded_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class MasterKeyCheck(Base):
    """A known value encrypted under each master version: proves on start that the key matches."""

    __tablename__ = "master_key_checks"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    probe: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

"""Licensed item text of the rating form (the official SRS wording, loaded by a licensed practice).

Alliance never ships the SRS wording (copyrighted; see shared reference, section A). Without a
load the form uses our own neutral wording ("alliance4") and is not called SRS.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.ratings.models import MeasureText
from core.ratings.service import ITEMS, LICENSED_MEASURE
from core.store.db import Store

_PARTS = ("prompt", "low", "high")
_LIMIT = 500


class MeasureFileError(ValueError):
    """The measure file is unreadable or incomplete; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ItemText:
    prompt: str
    low: str
    high: str


@dataclass(frozen=True, slots=True)
class LicensedMeasure:
    code: str
    name: str
    copyright_line: str
    locales: dict[str, dict[str, ItemText]]
    attested_at: datetime

    def items_for(self, locale: str) -> dict[str, ItemText] | None:
        """The item text in ``locale`` (or its language), else None: the caller falls back."""
        return self.locales.get(locale) or self.locales.get(locale.split("_")[0].split("-")[0])


def parse_measure_file(path: Path) -> dict[str, Any]:
    """Read and check a measure file (TOML, or JSON by its ``.json`` suffix).

    Shape: ``name``, ``copyright``, and ``[locales.<lang>.<item>]`` tables with ``prompt``,
    ``low`` and ``high`` for each of the items bond, goals, approach, overall.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MeasureFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data: Any = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MeasureFileError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise MeasureFileError("the file must hold a table/object at the top")
    for key in ("name", "copyright"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise MeasureFileError(f"'{key}' is missing or empty")
    locales = data.get("locales")
    if not isinstance(locales, dict) or not locales:
        raise MeasureFileError("'locales' must hold at least one language, e.g. [locales.en.bond]")
    clean: dict[str, dict[str, dict[str, str]]] = {}
    for lang, items in locales.items():
        if not isinstance(items, dict):
            raise MeasureFileError(f"locales.{lang} must be a table of items")
        clean[lang] = {}
        for item in ITEMS:
            entry = items.get(item)
            if not isinstance(entry, dict):
                raise MeasureFileError(f"locales.{lang}.{item} is missing")
            clean[lang][item] = {}
            for part in _PARTS:
                value = entry.get(part)
                if not isinstance(value, str) or not value.strip() or len(value) > _LIMIT:
                    raise MeasureFileError(f"locales.{lang}.{item}.{part} must be text of 1 to {_LIMIT} characters")
                clean[lang][item][part] = value.strip()
        unknown = sorted(set(items) - set(ITEMS))
        if unknown:
            raise MeasureFileError(f"locales.{lang} has unknown item(s): {', '.join(unknown)}")
    return {"name": data["name"].strip(), "copyright": data["copyright"].strip(), "locales": clean}


def load_licensed_measure(store: Store, path: Path, *, attest_license: bool, now: datetime | None = None) -> str:
    """Store the licensed text from ``path`` (replacing an earlier load); returns the measure's name."""
    if not attest_license:
        raise MeasureFileError("loading licensed text needs --attest-license (the practice holds a licence)")
    data = parse_measure_file(path)
    with store.session() as session:
        row = session.get(MeasureText, LICENSED_MEASURE)
        if row is None:
            row = MeasureText(code=LICENSED_MEASURE)
            session.add(row)
        row.name = data["name"]
        row.copyright_line = data["copyright"]
        row.locales = data["locales"]
        row.attested_at = now or datetime.now(UTC)
    return str(data["name"])


def licensed_measure(store: Store) -> LicensedMeasure | None:
    """The loaded licensed text, or None (then the form uses our own wording)."""
    with store.session() as session:
        row = session.scalar(select(MeasureText).where(MeasureText.code == LICENSED_MEASURE))
        if row is None:
            return None
        return LicensedMeasure(
            code=row.code,
            name=row.name,
            copyright_line=row.copyright_line,
            locales={
                lang: {item: ItemText(**parts) for item, parts in items.items()} for lang, items in row.locales.items()
            },
            attested_at=row.attested_at,
        )


def remove_licensed_measure(store: Store) -> bool:
    """Forget the licensed text (e.g. the licence ended); the form goes back to our own wording."""
    with store.session() as session:
        row = session.get(MeasureText, LICENSED_MEASURE)
        if row is None:
            return False
        session.delete(row)
        return True


__all__ = [
    "ItemText",
    "LicensedMeasure",
    "MeasureFileError",
    "licensed_measure",
    "load_licensed_measure",
    "parse_measure_file",
    "remove_licensed_measure",
]

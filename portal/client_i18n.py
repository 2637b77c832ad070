"""Languages of the client pages: English (the source strings) and Spanish (a gettext catalog).

The catalog is ``portal/locale/<lang>/LC_MESSAGES/client.po``, read with Babel and compiled in
memory at start-up (no binary ``.mo`` in the repository). The language comes from ``?lang=``
(remembered in a cookie), else the cookie, else the browser's ``Accept-Language``.
"""

from __future__ import annotations

import gettext
import io
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.core import negotiate_locale
from babel.dates import format_date, format_time, get_timezone_name
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "alliance_lang"
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")

Gettext = Callable[[str], str]


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang`` (the source strings themselves for English)."""
    path = LOCALE_DIR / lang / "LC_MESSAGES" / "client.po"
    if lang == DEFAULT_LANGUAGE or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def gettext_for(lang: str) -> Gettext:
    return translations(lang).gettext


def _accepted(header: str) -> list[str]:
    """Language tags of an Accept-Language header, best first (q=0 dropped)."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or not _TAG.match(tag):
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if q > 0:
            weighted.append((-q, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(
    query: str | None, cookie: str | None, accept_language: str | None, preferred: str | None = None
) -> str:
    """``?lang=`` beats the cookie, which beats the client's stored language (``preferred``), which
    beats the browser's preference; English otherwise."""
    for explicit in (query, cookie, preferred):
        if explicit in LANGUAGES:
            return explicit
    if accept_language:
        chosen = negotiate_locale(_accepted(accept_language), list(LANGUAGES), sep="-")
        if chosen:
            return chosen
    return DEFAULT_LANGUAGE


@lru_cache(maxsize=4096)
def format_when(value: datetime, zone: str, lang: str) -> tuple[str, str, str]:
    """(date, time, zone label) of ``value`` in ``zone``, in the words of ``lang``.

    Cached: Babel's formatting was a fifth of a client page's server time, and a page is opened
    again and again (reloads, the reminder, the device check) with the same three arguments.
    """
    local = value.astimezone(ZoneInfo(zone))
    label = f"{get_timezone_name(local, 'long', locale=lang)}, {zone}"
    return format_date(local, "full", locale=lang), format_time(local, "short", locale=lang), label


__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANG_COOKIE",
    "Gettext",
    "choose_language",
    "format_when",
    "gettext_for",
    "translations",
]

"""Every string of the client pages has its Spanish translation, and languages are chosen as documented."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2.ext import babel_extract

from portal import client_pages
from portal.client_i18n import choose_language, translations

ROOT = Path(client_pages.__file__).parent


def _msgids() -> set[str]:
    found: set[str] = set()
    for template in (ROOT / "templates" / "client").glob("*.html"):
        with template.open("rb") as fh:
            found.update(str(message) for _line, _func, message, _comments in babel_extract(fh, ["_"], [], {}))
    source = (ROOT / "client_pages.py").read_text()
    found.update(re.findall(r'_\("((?:[^"\\]|\\.)*)"\)', source))
    for prompt, low, high in client_pages.BUILTIN_ITEMS.values():
        found.update((prompt, low, high))
    found.update(client_pages.CHECKLIST_TEXT.values())
    return found


def test_every_client_string_is_translated_to_spanish() -> None:
    spanish = translations("es")
    ids = _msgids()
    assert len(ids) > 50
    missing = sorted(i for i in ids if spanish.gettext(i) == i)
    assert missing == []


def test_language_choice() -> None:
    assert choose_language(None, None, "es-ES,es;q=0.9,en;q=0.8") == "es"
    assert choose_language(None, None, "de-DE,de;q=0.9,es;q=0.5,en;q=0.4") == "es"
    assert choose_language(None, None, "en;q=0.2,es;q=0.9") == "es"
    assert choose_language(None, None, "fr, de") == "en"
    assert choose_language(None, "es", "en") == "es"
    assert choose_language("en", "es", "es") == "en"
    assert choose_language("xx", None, "es;q=0") == "en"

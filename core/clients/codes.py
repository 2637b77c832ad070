"""Pseudonymous client codes and the normal form of e-mail addresses (pure functions, no I/O).

A code such as ``K7Q2`` is what a calendar title, a log line or a conversation may carry instead
of a name (reference/clinical.md F: random, held only in the app, never initials). The alphabet
leaves out characters people confuse when reading a code aloud or off a screen (0/O, 1/I/L).
"""

from __future__ import annotations

import contextlib
import secrets
import unicodedata
from collections.abc import Callable

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
DEFAULT_LENGTH = 4
MAX_LENGTH = 12

Chooser = Callable[[str], str]


def generate_code(length: int = DEFAULT_LENGTH, choice: Chooser = secrets.choice) -> str:
    """A random code of ``length`` characters from :data:`ALPHABET`."""
    if not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"a client code has 1 to {MAX_LENGTH} characters")
    return "".join(choice(ALPHABET) for _ in range(length))


def normalise_code(value: str) -> str | None:
    """The stored form of a code a person typed (upper case, no spaces), or None if it is not one."""
    text = "".join(value.split()).upper()
    if not 1 <= len(text) <= MAX_LENGTH or any(c not in ALPHABET for c in text):
        return None
    return text


def normalise_email(value: str) -> str | None:
    """The comparable form of an e-mail address, or None when ``value`` is not one.

    Accepts what calendars put in attendee lists: ``mailto:`` prefixes, ``Name <a@b>``, stray
    spaces, any letter case, full-width characters. Local parts are compared case-insensitively
    (RFC 5321 allows case-sensitive ones, but no mail provider a client uses has them) and an
    internationalised domain in its ASCII (punycode) form.
    """
    text = unicodedata.normalize("NFKC", value).strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1].strip()
    while text[:7].casefold() == "mailto:":  # a loop, so that the result is normal itself
        text = text[7:].strip()
    # casefold() can leave text that is no longer NFKC (e.g. some ligatures): normalise again.
    text = unicodedata.normalize("NFKC", text.casefold())
    local, sep, domain = text.rpartition("@")
    if not sep or not local or "@" in local or any(c.isspace() or c in "<>" for c in text):
        return None
    with contextlib.suppress(UnicodeError):  # not a valid IDN: compare the Unicode form, still deterministic
        domain = domain.encode("idna").decode("ascii")
    domain = domain.rstrip(".")  # a fully qualified "example.org." is the same domain
    if not domain:
        return None
    return f"{local}@{domain}"

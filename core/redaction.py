"""Scrub text that may reach a log line, an error page or a stored error message.

Defence in depth, not the guarantee itself: code never logs titles, descriptions, notes or
attendees in the first place (outbox payloads carry ids and instants only). What a pattern
*can* recognise is removed here whatever the caller did: e-mail addresses, credentials after
``token=`` / ``Authorization:``-like keys, long random tokens (secret feed paths, OAuth tokens,
client link tokens), URL userinfo and query strings. Free text such as a session title cannot be
recognised by a pattern; that is why exception messages of foreign libraries (which may quote
the data they choked on) are dropped by :func:`describe_error` and :func:`format_exception_safely`.
"""

from __future__ import annotations

import re
import traceback
from urllib.parse import urlsplit

__all__ = [
    "OWN_PACKAGES",
    "REDACTED",
    "describe_error",
    "format_exception_safely",
    "is_sensitive_key",
    "scrub",
    "scrub_value",
]

REDACTED = "[redacted]"

# Exceptions raised by these packages word their messages for people (ids, a host name, what to
# do) and never quote content; anything else may quote the title or address it failed on.
OWN_PACKAGES = ("core", "alliance", "integrations", "webhooks", "portal", "sandbox")

_SENSITIVE_KEY_PARTS = (
    "title",
    "summary",
    "description",
    "location",
    "attendee",
    "organizer",
    "note",
    "comment",
    "email",
    "e_mail",
    "mail",
    "token",
    "secret",
    "password",
    "passwd",
    "credential",
    "authorization",
    "cookie",
    "client_code",
    "api_key",
    "apikey",
    "content",
    "body",
    "source",
    "url",
    "phone",
)

_EMAIL = re.compile(r"[\w.+\-%]+(?:@|%40)[\w\-]+(?:\.[\w\-]+)*", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s'\"<>`]+", re.IGNORECASE)
# "Bearer abc", "Authorization: xyz", "access_token=abc", '"refresh_token": "abc"', "password=x"
_AUTH_SCHEME = re.compile(r"\b(bearer|basic|digest)\s+[^\s,;'\"]+", re.IGNORECASE)
_KEY_VALUE = re.compile(
    r"""(?P<key>\b[\w\-]*(?:token|secret|password|passwd|api[_\-]?key|authorization|client[_\-]?code|"""
    r"""code_verifier|signature|sig|session[_\-]?id|cookie)\b)(?P<sep>["']?\s*[:=]\s*["']?)"""
    r"""(?P<value>[^\s"'&,;}\]]+)""",
    re.IGNORECASE,
)
# Long runs of token characters with at least one digit and one letter: OAuth tokens, secret
# iCal path segments ("private-0a1b..."), client link tokens, API keys. UUIDs stay readable:
# event ids are meant to be logged. A random token may hold no digit at all (a 32-character
# client link token: 1 in 230), so mixed case in the way random text has it counts too: two
# capitals in a row beside a small letter, or three switches from small to capital. A long
# CamelCase name with an acronym in it may be redacted with them; a lower-case identifier is not.
_LONG_TOKEN = re.compile(
    r"(?<![\w\-])"
    r"(?![0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![\w\-]))"  # a UUID: an id, not a secret
    r"(?:"
    r"(?=[\w\-]*\d)(?=[\w\-]*[a-z])"  # a digit and a letter
    r"|(?-i:(?=[\w\-]*[A-Z][A-Z])(?=[\w\-]*[a-z]))"  # two capitals in a row, and a small letter
    r"|(?-i:(?=(?:[\w\-]*?[a-z][A-Z]){3}))"  # three switches from small to capital
    r")"
    r"[\w\-]{24,}(?![\w\-])",
    re.IGNORECASE,
)


def is_sensitive_key(key: str) -> bool:
    """True for field names that may carry content or secrets (``title``, ``attendees``, ``access_token``)."""
    lowered = key.lower()
    return any(part in lowered for part in _SENSITIVE_KEY_PARTS)


def _scrub_url(match: re.Match[str]) -> str:
    text = match.group(0)
    trailing = ""
    while text and text[-1] in ".,;:)]}":  # punctuation that ends a sentence, not the URL
        trailing = text[-1] + trailing
        text = text[:-1]
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return REDACTED + trailing
    path = "/".join(
        REDACTED if _EMAIL.search(seg) or _LONG_TOKEN.fullmatch(seg) else seg for seg in parts.path.split("/")
    )
    query = f"?{REDACTED}" if parts.query else ""
    # Userinfo ("user:password@") and the fragment are dropped outright.
    return f"{parts.scheme}://{host}{port}{path}{query}{trailing}"


def scrub(text: str) -> str:
    """``text`` with e-mail addresses, credentials, long tokens and URL secrets replaced."""
    if not text:
        return text
    text = _URL.sub(_scrub_url, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
    text = _EMAIL.sub(REDACTED, text)
    return _LONG_TOKEN.sub(REDACTED, text)


def scrub_value(value: object, key: str | None = None) -> object:
    """A structured value with sensitive keys redacted and every string scrubbed."""
    if key is not None and is_sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def _is_own(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.split(".", 1)[0] in OWN_PACKAGES


def describe_error(exc: BaseException, *, limit: int = 300) -> str:
    """One line naming the error: type and message for our own exceptions, the type alone otherwise."""
    name = type(exc).__name__
    if not _is_own(exc):
        return name
    lines = str(exc).strip().splitlines()
    message = scrub(lines[0]) if lines else ""
    line = f"{name}: {message}" if message else name
    return line if len(line) <= limit else line[: limit - 3] + "..."


def format_exception_safely(exc: BaseException) -> str:
    """A traceback (code locations only) whose exception lines go through :func:`describe_error`.

    Frames name files, lines and source code, never data; the message of a foreign exception may
    quote data (a title it could not parse, a URL it could not reach) and is left out.
    """
    chunks: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    chain: list[tuple[BaseException, str]] = []
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            link = "The above exception was the direct cause of the following exception:"
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            link = "During handling of the above exception, another exception occurred:"
            current = current.__context__
        else:
            current = None
    # Printed oldest first, like the interpreter does.
    for index, (item, _) in enumerate(reversed(chain)):
        if index:
            chunks.append("\n" + chain[len(chain) - index][1] + "\n\n")
        if item.__traceback__ is not None:
            chunks.append("Traceback (most recent call last):\n")
            chunks.extend(traceback.format_list(traceback.extract_tb(item.__traceback__)))
        chunks.append(describe_error(item) + "\n")
    return "".join(chunks).rstrip("\n")

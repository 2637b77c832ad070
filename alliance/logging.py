"""Structured logs with a redaction filter, for ``alliance serve`` and the CLI.

One line per record, ``key=value`` ("text") or one JSON object ("json", python-json-logger).
The :class:`RedactionFilter` sits on the root handler, so every record that reaches a log line
passes it, whichever logger it came from: the message is rendered and scrubbed
(:func:`core.redaction.scrub`), sensitive ``extra`` fields (title, description, location,
attendees, note, email, token, client_code, ...) are replaced, and tracebacks keep code locations
but drop the messages of foreign exceptions (which may quote the data they failed on).

Uvicorn: start it with ``log_config=None`` so its access log (paths with client link tokens)
propagates to this handler instead of its own.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pythonjsonlogger.json import JsonFormatter

from core.redaction import REDACTED, format_exception_safely, is_sensitive_key, scrub, scrub_value

__all__ = ["KeyValueFormatter", "RedactionFilter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# Loggers that log full URLs (with secret paths or query strings) or whole requests at INFO/DEBUG.
_NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "googleapiclient.discovery", "msal", "authlib")


class RedactionFilter(logging.Filter):
    """Scrubs a record in place before any formatter sees it; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record (nor leak its args)
            message = f"{record.msg!s} [unformattable arguments]"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception_safely(record.exc_info[1])
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            setattr(record, key, REDACTED if is_sensitive_key(key) else scrub_value(value))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=INFO logger=core.jobs msg="..." event_id=...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        fields: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.message,
        }
        fields.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def _formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
            timestamp="ts",  # ISO 8601 in UTC
        )
    return KeyValueFormatter()


def configure_logging(
    *, level: int = logging.WARNING, fmt: Literal["text", "json"] = "text", stream: IO[str] | None = None
) -> logging.Handler:
    """Install one redacting handler on the root logger (replacing earlier ones); returns it."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_formatter(fmt))
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_alliance", False):
            root.removeHandler(old)
    handler._alliance = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request's full URL at INFO, and a feed URL can embed its secret; keep
    # such libraries at WARNING whatever the level (the filter would scrub them anyway).
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler

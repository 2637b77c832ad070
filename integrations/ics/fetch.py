"""Read the bytes of an ICS feed from a file or over HTTP(S), conditionally and size-limited.

Every failure becomes a :class:`SourceError` with one line a therapist can act on. A feed URL is
only ever named by scheme and host (:func:`describe_source`): secret iCal addresses carry their
secret in the path or the query string.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.sync.types import SourceError, SourceUnavailable
from integrations.ics.public_only import PublicOnlyTransport
from integrations.ics.settings import describe_source, is_url

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
# A server trickling bytes slowly enough never trips the per-read timeout; cap the whole download.
TOTAL_SECONDS = 120.0
_CHUNK = 1024 * 1024
_USER_AGENT = "Alliance-ICS/1 (calendar sync for psychotherapists)"


class _RedactUrls(logging.Filter):
    """Cut the URLs httpx logs ("HTTP Request: GET <url>", INFO) down to scheme and host.

    httpx logs every request with its full URL, secret path and query string included; a feed
    address must never reach a log line, whatever level the operator configures.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_origin(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


def _install_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrls) for f in logger.filters):
        logger.addFilter(_RedactUrls())


_install_redaction()


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of one read: ``body`` is None when the server said "not modified"."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.body is None


def fetch(
    source: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int,
    timeout: float = TIMEOUT_SECONDS,
    public_only: bool = False,
) -> Fetched:
    """Read ``source``; with ``etag``/``last_modified`` an HTTP server may answer "not modified".

    ``public_only``: connect to public internet addresses only (integrations.ics.public_only).
    """
    if is_url(source):
        return _fetch_http(
            source,
            etag=etag,
            last_modified=last_modified,
            max_bytes=max_bytes,
            timeout=timeout,
            public_only=public_only,
        )
    if public_only:
        raise SourceError("this calendar source must be an http(s) feed address")
    return Fetched(body=_read_file(Path(source), max_bytes))


def _too_large(where: str, max_bytes: int) -> SourceError:
    return SourceError(f"the calendar feed at {where} is larger than the {_size(max_bytes)} limit (max_bytes)")


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as fh:
            # Read one byte past the limit: a file growing between stat and read still stops here.
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError(f"the calendar file {path} no longer exists") from None
    except IsADirectoryError:
        raise SourceError(f"the calendar source {path} is a folder, not a file") from None
    except PermissionError:
        raise SourceError(f"the calendar file {path} cannot be read (permission denied)") from None
    except OSError as exc:
        raise SourceError(f"the calendar file {path} cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise _too_large(str(path), max_bytes)
    return data


def _fetch_http(
    url: str, *, etag: str | None, last_modified: str | None, max_bytes: int, timeout: float, public_only: bool
) -> Fetched:
    where = describe_source(url)
    headers = {"User-Agent": _USER_AGENT, "Accept": "text/calendar, text/plain;q=0.9, */*;q=0.5"}
    conditional = False
    if etag:
        headers["If-None-Match"] = etag
        conditional = True
    if last_modified:
        headers["If-Modified-Since"] = last_modified
        conditional = True
    deadline = time.monotonic() + max(timeout, TOTAL_SECONDS)
    try:
        with (
            httpx.Client(
                follow_redirects=True,
                timeout=timeout,
                headers=headers,
                transport=PublicOnlyTransport() if public_only else None,
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code == 304:
                if not conditional:
                    raise SourceError(f"the calendar server at {where} answered 304 Not Modified to a plain request")
                log.debug("ICS feed at %s not modified", where)
                return Fetched(
                    body=None,
                    etag=response.headers.get("ETag") or etag,
                    last_modified=response.headers.get("Last-Modified") or last_modified,
                )
            if not response.is_success:
                reason = response.reason_phrase or ""
                message = (
                    f"the calendar server at {where} answered HTTP {response.status_code}"
                    + (f" ({reason})" if reason else "")
                    + _status_hint(response.status_code)
                )
                if response.status_code == 429 or response.status_code >= 500:
                    # Passing trouble: the sync job backs off (honouring Retry-After) and tries again.
                    raise SourceUnavailable(message, retry_after=_retry_after(response.headers.get("Retry-After")))
                raise SourceError(message)
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(where, max_bytes)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes(_CHUNK):
                size += len(chunk)
                if size > max_bytes:  # decoded size: a gzip bomb stops here too
                    raise _too_large(where, max_bytes)
                if time.monotonic() > deadline:
                    raise SourceError(f"the calendar server at {where} is too slow: the feed did not arrive in time")
                chunks.append(chunk)
            return Fetched(
                body=b"".join(chunks),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                content_type=response.headers.get("Content-Type"),
            )
    except httpx.TimeoutException:
        slow = f"the calendar server at {where} did not answer within {timeout:g} s"
        raise SourceUnavailable(slow) from None
    except httpx.ConnectError as exc:
        unreachable = f"could not connect to the calendar server at {where}: {_connect_reason(exc)}"
        raise SourceUnavailable(unreachable) from None
    except httpx.TooManyRedirects:
        raise SourceError(f"the calendar server at {where} redirected too many times") from None
    except httpx.HTTPError as exc:
        # Other transport failures (protocol errors, a redirect to an unsupported scheme...). Their
        # text may quote the URL, so only the kind of failure is reported.
        raise SourceError(f"reading the calendar feed at {where} failed ({type(exc).__name__})") from None


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in delta-seconds (the HTTP-date form is rare for feeds and ignored)."""
    return float(value) if value is not None and value.strip().isdigit() else None


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "; the feed address may have been reset or made private"
    if status in (404, 410):
        return "; the feed address may be wrong or the calendar no longer published"
    return ""


def _connect_reason(exc: httpx.ConnectError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "the host name could not be resolved"
    if "certificate" in text or "ssl" in text:
        return "the TLS certificate could not be verified"
    if "unreachable" in text:
        return "the network is unreachable"
    return "the connection failed"


__all__ = ["TIMEOUT_SECONDS", "Fetched", "fetch"]

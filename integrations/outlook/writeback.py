"""Write-back: put a session's join link on its Outlook event, and recognise that write coming back.

What Alliance writes (DESIGN.md: only what it owns, never anything naming a client):

- the event's ``body`` gets one block at its end, :data:`LABEL` followed by the link, after the
  therapist's own text (kept as it is; an HTML body, which is what Graph returns for most events,
  gets the block as one paragraph before ``</body>``, spliced in without re-serialising the rest:
  integrations/outlook/html_block.py); a later link replaces the block, never adds a second;
- a single-value extended property :data:`PROPERTY_ID` holding the link, which marks the block as
  Alliance's (only apps that ask for that exact property see it).

The therapist's own online meeting wins: an event that already carries a Teams (or other online
meeting) join URL is left alone, and that URL stays the session's video link (the mapping reads it
as the conference URL).

The write is a PATCH with ``If-Match`` on the ``@odata.etag`` just read. Graph answers 412 when the
changeKey moved on (the therapist was editing the event): it is read again and the block re-applied
to the new text, a few times at most.

Echo: the write changes the changeKey and Graph notifies the subscription; the next delta lists the
event again. calendarView delta cannot expand extended properties, so :func:`own_text` recognises
the block by its fixed label and a link at the very end of the text and leaves it out of the
description the mapping hashes: the echo hashes exactly as before, no change, no
``occurrence.updated``. A therapist's own edit still changes the hash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from integrations.base.writeback import TargetGone
from integrations.outlook.client import GraphClient
from integrations.outlook.errors import NotFound, PreconditionFailed, RequestRejected
from integrations.outlook.html_block import with_join_link, without_join_link
from integrations.outlook.mapping import LABEL, join_url, own_text

__all__ = [
    "LABEL",
    "MAX_ATTEMPTS",
    "PROPERTY_ID",
    "EventGone",
    "WriteBackResult",
    "WriteConflict",
    "own_text",
    "remove_join_link",
    "write_join_link",
]

log = logging.getLogger(__name__)

# A named string property in Alliance's own property set (a fixed GUID), as Graph spells it.
PROPERTY_ID = "String {6b1e9a52-3c47-4d8e-9f0a-a11ace5e55f0} Name allianceJoinLink"
_SEPARATOR = "\n\n"
MAX_ATTEMPTS = 4
# A join link is one http(s) URL without spaces or markup; anything else is refused before any request.
_LINK = re.compile(r"https?://[^\s<>\"']+")
# The body is read as HTML, Graph's default, said explicitly: written back as read, the
# therapist's formatting survives (a text read written back would flatten it for good).
_HTML_BODY = ("Prefer", 'outlook.body-content-type="html"')


class EventGone(RequestRejected, TargetGone):
    """The event was deleted or cancelled: there is nothing to write on."""


class WriteConflict(RequestRejected):
    """The event kept changing under the write (412 after every re-read)."""


@dataclass(frozen=True, slots=True)
class WriteBackResult:
    event_id: str
    etag: str
    changed: bool  # False: the event already carried this link, or its own online meeting (nothing sent)
    attempts: int  # PATCH requests made (a 412 adds one)


def _block(link: str) -> str:
    return f"{LABEL}{link}"


def _property(event: Mapping[str, Any]) -> str | None:
    for prop in event.get("singleValueExtendedProperties") or []:
        if isinstance(prop, Mapping) and prop.get("id") == PROPERTY_ID and isinstance(prop.get("value"), str):
            return str(prop["value"])
    return None


def _new_body(body: Mapping[str, Any], link: str) -> dict[str, str]:
    content = str(body.get("content") or "")
    if str(body.get("contentType") or "text").lower() == "html":
        return {"contentType": "html", "content": with_join_link(content, link)}
    base = own_text(content).rstrip()
    return {"contentType": "text", "content": f"{base}{_SEPARATOR}{_block(link)}" if base else _block(link)}


def _patch_for(event: Mapping[str, Any], link: str) -> dict[str, Any] | None:
    """The PATCH body that puts ``link`` on ``event``, or None when there is nothing to write."""
    raw = event.get("body")
    body: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    new_body = _new_body(body, link)
    if _property(event) == link and new_body.get("content") == body.get("content"):
        return None
    return {"body": new_body, "singleValueExtendedProperties": [{"id": PROPERTY_ID, "value": link}]}


def _read(client: GraphClient, path: str) -> dict[str, Any]:
    # Extended properties are only returned when asked for by id.
    expand = {"$expand": f"singleValueExtendedProperties($filter=id eq '{PROPERTY_ID}')"}
    try:
        return client.send("GET", path, params=expand, headers=[_HTML_BODY]) or {}
    except NotFound:
        raise EventGone("the Outlook event no longer exists; nothing was written") from None


def _without_block(body: Mapping[str, Any]) -> dict[str, str]:
    content = str(body.get("content") or "")
    if str(body.get("contentType") or "text").lower() == "html":
        return {"contentType": "html", "content": without_join_link(content)}
    return {"contentType": "text", "content": own_text(content)}


def remove_join_link(client: GraphClient, event_id: str) -> WriteBackResult:
    """Take Alliance's join-link block off the event (the meeting is gone); idempotent.

    The therapist's own text stays; the marker property is emptied. Same If-Match and 412 handling
    as :func:`write_join_link`.
    """
    path = f"/me/events/{quote(event_id, safe='')}"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        event = _read(client, path)
        raw = event.get("body")
        body: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        new_body = _without_block(body)
        if new_body["content"] == (body.get("content") or "") and not _property(event):
            return WriteBackResult(event_id, str(event.get("@odata.etag", "")), changed=False, attempts=attempt - 1)
        etag = str(event.get("@odata.etag") or "")
        patch = {"body": new_body, "singleValueExtendedProperties": [{"id": PROPERTY_ID, "value": ""}]}
        try:
            patched = client.send("PATCH", path, json=patch, headers=[("If-Match", etag)] if etag else None) or {}
        except PreconditionFailed:
            log.info("Outlook event %s changed while its join link was removed; reading it again", event_id)
            continue
        return WriteBackResult(event_id, str(patched.get("@odata.etag", "")), changed=True, attempts=attempt)
    raise WriteConflict(f"the Outlook event kept changing; its join link was not removed after {MAX_ATTEMPTS} tries")


def write_join_link(client: GraphClient, event_id: str, link: str) -> WriteBackResult:
    """Put ``link`` on the event (see the module docstring); idempotent.

    Raises ValueError for a link that is not one http(s) URL, :class:`WriteConflict` when the
    event changed under every attempt, and the client's errors (``NotFound``: the event is gone).
    """
    if not _LINK.fullmatch(link):
        raise ValueError("a join link must be one http(s) URL without spaces")
    path = f"/me/events/{quote(event_id, safe='')}"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        event = _read(client, path)
        if event.get("isCancelled"):
            raise EventGone("the Outlook event was cancelled; no join link was written")
        if join_url(event):
            # The therapist's own Teams (or other) meeting is the session's video link: keep it.
            return WriteBackResult(event_id, str(event.get("@odata.etag", "")), changed=False, attempts=attempt - 1)
        patch = _patch_for(event, link)
        if patch is None:
            return WriteBackResult(event_id, str(event.get("@odata.etag", "")), changed=False, attempts=attempt - 1)
        etag = str(event.get("@odata.etag") or "")
        try:
            patched = client.send("PATCH", path, json=patch, headers=[("If-Match", etag)] if etag else None) or {}
        except PreconditionFailed:
            log.info("Outlook event %s changed while its join link was written; reading it again", event_id)
            continue
        return WriteBackResult(event_id, str(patched.get("@odata.etag", "")), changed=True, attempts=attempt)
    raise WriteConflict(f"the Outlook event kept changing; its join link was not written after {MAX_ATTEMPTS} tries")

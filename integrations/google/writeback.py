"""Write-back: put a session's join link on its Google event, and recognise that write coming back.

What Alliance writes (DESIGN.md: only what it owns, never anything naming a client):

- the event's ``description`` gets one block at its end, :data:`LABEL` followed by the link, after
  the therapist's own text (kept as it is); a later link replaces the block, never adds a second;
- a *private* extended property :data:`PROPERTY` holding the link: private properties live on this
  calendar's copy only (attendees never see them) and mark which block is Alliance's.

The write is a PATCH (never PUT, which could reset fields a non-organizer may not touch; the
errors guide) with ``If-Match`` on the etag just read, and ``sendUpdates=none`` so attendees get
no e-mail. A 412 means the event changed between the read and the write (the therapist was
editing it): it is read again and the block re-applied to the new text, a few times at most.

Echo: the write makes Google bump the etag and ping every channel, and the next sync lists the
event again. :func:`own_text` removes Alliance's block (recognised by the private property) from
the description before the mapping hashes it, so the echo hashes exactly as before the write: no
change, no ``occurrence.updated``. A therapist's own edit still changes the hash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from integrations.base.writeback import TargetGone
from integrations.google.client import CalendarClient
from integrations.google.errors import NotFound, PreconditionFailed, RequestRejected

__all__ = [
    "LABEL",
    "MAX_ATTEMPTS",
    "PROPERTY",
    "EventGone",
    "WriteBackResult",
    "WriteConflict",
    "own_text",
    "remove_join_link",
    "write_join_link",
]

log = logging.getLogger(__name__)

PROPERTY = "allianceJoinLink"
# Fixed wording: the block carries no name, no diagnosis, nothing but this label and the link.
LABEL = "Video session: "
_SEPARATOR = "\n\n"
MAX_ATTEMPTS = 4
# A join link is one http(s) URL without spaces or markup; anything else is refused before any request.
_LINK = re.compile(r"https?://[^\s<>\"']+")


class WriteConflict(RequestRejected):
    """The event kept changing under the write (412 after every re-read)."""


class EventGone(RequestRejected, TargetGone):
    """The event was deleted (``status: cancelled``): there is nothing to write on."""


@dataclass(frozen=True, slots=True)
class WriteBackResult:
    event_id: str
    etag: str
    changed: bool  # False: the event already carried this link (nothing was sent)
    attempts: int  # PATCH requests made (a 412 adds one)


def _block(link: str) -> str:
    return f"{LABEL}{link}"


def _private(item: Mapping[str, Any]) -> Mapping[str, Any]:
    props = item.get("extendedProperties")
    private = props.get("private") if isinstance(props, Mapping) else None
    return private if isinstance(private, Mapping) else {}


def own_text(item: Mapping[str, Any]) -> str:
    """The event's description without Alliance's join-link block (the therapist's own text)."""
    description = str(item.get("description") or "")
    if "extendedProperties" not in item:  # most events: no block can be Alliance's
        return description
    link = _private(item).get(PROPERTY)
    if not isinstance(link, str) or not link:
        return description
    block = _block(link)
    if description == block:
        return ""
    if description.endswith(_SEPARATOR + block):
        return description[: -len(_SEPARATOR + block)]
    # The therapist edited or removed the block: what is there now is theirs.
    return description


def _patch_for(event: Mapping[str, Any], link: str) -> dict[str, Any] | None:
    """The PATCH body that puts ``link`` on ``event``, or None when it already carries it."""
    base = own_text(event).rstrip()
    description = f"{base}{_SEPARATOR}{_block(link)}" if base else _block(link)
    if description == (event.get("description") or "") and _private(event).get(PROPERTY) == link:
        return None
    return {"description": description, "extendedProperties": {"private": {PROPERTY: link}}}


def _removal_for(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PATCH body that takes Alliance's block off ``event``, or None when it carries none."""
    if not _private(event).get(PROPERTY):
        return None
    # The property is emptied rather than deleted: an empty value means "no link" to own_text,
    # whatever a PATCH does with a null inside a map.
    return {"description": own_text(event), "extendedProperties": {"private": {PROPERTY: ""}}}


def _apply(
    client: CalendarClient,
    calendar_id: str,
    event_id: str,
    body_for: Callable[[Mapping[str, Any]], dict[str, Any] | None],
) -> WriteBackResult:
    """Read, build the PATCH, send it with If-Match; on 412 read again (at most MAX_ATTEMPTS)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            event = client.get_event(calendar_id, event_id)
        except NotFound:
            raise EventGone("the Google event no longer exists; its join link was not changed") from None
        if event.get("status") == "cancelled":
            raise EventGone("the Google event was deleted; its join link was not changed")
        body = body_for(event)
        if body is None:
            return WriteBackResult(event_id, str(event.get("etag", "")), changed=False, attempts=attempt - 1)
        try:
            patched = client.patch_event(calendar_id, event_id, body, if_match=str(event.get("etag", "")))
        except PreconditionFailed:
            log.info("Google event %s changed while its join link was written; reading it again", event_id)
            continue
        return WriteBackResult(event_id, str(patched.get("etag", "")), changed=True, attempts=attempt)
    raise WriteConflict(f"the Google event kept changing; its join link was not written after {MAX_ATTEMPTS} tries")


def remove_join_link(client: CalendarClient, calendar_id: str, event_id: str) -> WriteBackResult:
    """Take Alliance's join-link block off the event (the meeting is gone); idempotent.

    The therapist's own text stays; a block the therapist edited is theirs and stays too.
    """
    return _apply(client, calendar_id, event_id, _removal_for)


def write_join_link(client: CalendarClient, calendar_id: str, event_id: str, link: str) -> WriteBackResult:
    """Put ``link`` on the event (see the module docstring); idempotent.

    Raises ValueError for a link that is not one http(s) URL, :class:`WriteConflict` when the
    event changed under every attempt, and the client's errors (``NotFound``: the event is gone).
    """
    if not _LINK.fullmatch(link):
        raise ValueError("a join link must be one http(s) URL without spaces")
    return _apply(client, calendar_id, event_id, lambda event: _patch_for(event, link))

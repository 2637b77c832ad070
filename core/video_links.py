"""Find the video-call link of an event in its free-text fields.

Calendars put the join link in different places: Google in its conference data
(X-GOOGLE-CONFERENCE in ICS exports), Outlook/Teams in the description, many people in the
location or URL. The first link found, in that order of trust, wins.
"""

from __future__ import annotations

import html
import re

_SITE_PAGES = (
    "(?:information|pricing|user|users|org|login|log-in|signin|sign-in|signup|sign-up|register|"
    "account|settings|help|support|about|blog|contact|privacy|terms|features|download|"
    "meeting-center|en|es|de|fr)"
)

# One pattern per platform; each matches a join link, not the platform's home page.
_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # Zoom (also vanity subdomains and ZoomGov): /j/<id>, /my/<name>, /w/<id>. Never /s/<id>:
        # that is the host's start link, whose zak token grants host rights.
        r"https://(?:[a-z0-9-]+\.)?zoom(?:gov)?\.(?:us|com)/(?:j|my|w|wc/join)/[A-Za-z0-9._?=&%/-]+",
        r"https://meet\.google\.com/[a-z]{3}-[a-z]{4}-[a-z]{3}(?:\?[A-Za-z0-9._=&%-]*)?",
        r"https://teams\.microsoft\.com/l/meetup-join/[^\s<>\"']+",
        r"https://teams\.live\.com/meet/[^\s<>\"']+",
        r"https://[a-z0-9-]+\.webex\.com/(?:meet/|join/|[a-z0-9-]+/j\.php|[a-z0-9-]+/meet/)[^\s<>\"']*",
        # Room names, minus the sites' own pages (pricing, sign-in...), which are not rooms.
        rf"https://whereby\.com/(?!{_SITE_PAGES}\b)[A-Za-z0-9_-]+",
        r"https://meet\.jit\.si/[^\s<>\"']+",
        rf"https://(?:[a-z0-9-]+\.)?doxy\.me/(?!{_SITE_PAGES}\b)[A-Za-z0-9_-]+",
    )
)

# Characters that end a URL in running text but are rarely part of it.
_TRAILING = ".,;:!?)]>'\""


def find_video_url(text: str) -> str | None:
    """Return the earliest video-call link in ``text``, or None."""
    # Google and Outlook descriptions are HTML: "&amp;" inside a link is an escaped "&".
    text = html.unescape(text)
    if "://" not in text:  # every pattern starts with https://: no need to try them one by one
        return None
    best: tuple[int, str] | None = None
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), match.group(0).rstrip(_TRAILING))
    return best[1] if best else None


def detect_video_url(*fields: str) -> str | None:
    """Return the first video link found, trying ``fields`` in order of trust."""
    for text in fields:
        if text:
            url = find_video_url(text)
            if url:
                return url
    return None

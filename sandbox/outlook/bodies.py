"""Event bodies the way Graph documents them: an ``itemBody`` of ``contentType`` ``text`` or ``html``.

From the ``itemBody`` resource and the ``Prefer: outlook.body-content-type`` header of the event
API: a body is stored as written (text or HTML); a read returns it in HTML unless the request
prefers ``text`` (then the HTML is rendered as plain text), with ``Preference-Applied`` echoing the
preference when one was sent. Outlook keeps an HTML body as a whole document, so a fragment
written by a client comes back wrapped in ``<html><head>...</head><body>...</body></html>``;
``bodyPreview`` is always plain text.

The conversions are the emulator's own approximation of Exchange's (which the docs do not
specify): text to HTML escapes it and turns line breaks into ``<br>``; HTML to text drops the head,
scripts and styles, collapses whitespace as a browser does, and breaks lines at ``<br>`` and at
block elements.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = [
    "CONTENT_TYPES",
    "BodyError",
    "as_document",
    "content_type_of",
    "html_to_text",
    "present",
    "preview",
    "text_to_html",
]

CONTENT_TYPES = ("text", "html")
_HEAD = '<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n</head>\r\n'
_BLOCKS = frozenset(
    {"p", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr"}
)
_HIDDEN = frozenset({"head", "script", "style", "title"})
_SPACES = re.compile(r"[ \t\r\n\f]+")


class BodyError(ValueError):
    """An ``itemBody`` Graph would refuse (unknown content type)."""


def content_type_of(value: object) -> str:
    """The stored content type of a written ``itemBody`` (``text`` when not given)."""
    kind = str(value or "text").lower()
    if kind not in CONTENT_TYPES:
        raise BodyError(f"Requested value '{value}' was not found for contentType (text or html).")
    return kind


def as_document(fragment: str) -> str:
    """HTML as Outlook stores it: a fragment is wrapped in a document; a document is kept as is."""
    if re.search(r"<html[\s>]", fragment, re.IGNORECASE):
        return fragment
    return f"{_HEAD}<body>\r\n{fragment}\r\n</body>\r\n</html>\r\n"


def text_to_html(text: str) -> str:
    """A text body as an HTML document (escaped, one ``<br>`` per line break)."""
    lines = text.replace("\r\n", "\n").split("\n")
    return as_document("<div>" + "<br>".join(html.escape(line, quote=False) for line in lines) + "</div>")


class _TextRenderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def _break(self) -> None:
        # Whitespace between blocks is markup layout, not text (as in a browser).
        while self.parts and self.parts[-1] == " ":
            self.parts.pop()
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(_SPACES.sub(" ", data))


def html_to_text(document: str) -> str:
    """An HTML body rendered as plain text."""
    renderer = _TextRenderer()
    renderer.feed(document)
    renderer.close()
    lines = [line.strip() for line in "".join(renderer.parts).split("\n")]
    return "\n".join(lines).strip("\n")


def present(content_type: str, content: str, preferred: str | None) -> dict[str, str]:
    """The ``body`` a read returns: HTML unless ``text`` is preferred."""
    if (preferred or "html").lower() == "text":
        return {"contentType": "text", "content": html_to_text(content) if content_type == "html" else content}
    return {"contentType": "html", "content": content if content_type == "html" else text_to_html(content)}


def preview(content_type: str, content: str) -> str:
    """``bodyPreview``: the first 255 characters of the body as text."""
    return (html_to_text(content) if content_type == "html" else content)[:255]

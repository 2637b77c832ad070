"""Alliance's join-link paragraph in an HTML event body: found, removed and added without touching
anything else the therapist wrote.

Graph returns most event bodies as HTML documents (``contentType: html``), and Outlook may
re-serialise what it stores, dropping attributes it does not know; so Alliance's paragraph is
recognised by what it says (a ``<p>`` or ``<div>`` whose whole text is the label and one link,
the rule ``mapping.own_text`` applies to text bodies), not by a marker attribute. The document is
read with the standard library's HTML parser (tolerant of the broken markup mail clients write)
only to locate offsets; the edit splices the original string, so every other byte of the
therapist's HTML stays as it was: no re-serialisation, no sanitising.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from integrations.outlook.mapping import LABEL, own_text

__all__ = ["join_paragraph", "with_join_link", "without_join_link"]

_BLOCK_TAGS = frozenset({"p", "div"})


def join_paragraph(link: str) -> str:
    """The paragraph Alliance adds: the label, then the link (escaped for text and attribute)."""
    href = html.escape(link, quote=True)
    return f'<p data-alliance="join-link">{html.escape(LABEL, quote=False)}<a href="{href}">{href}</a></p>'


class _Scanner(HTMLParser):
    """Offsets of the join-link blocks and of the closing ``</body>`` in one document."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.document = document
        self._line_starts = [0]
        self._line_starts.extend(i + 1 for i, char in enumerate(document) if char == "\n")
        self._open: list[tuple[str, int, list[str]]] = []  # tag, start offset, text inside
        self.blocks: list[tuple[int, int]] = []
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._open.append((tag, self._offset(), []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()  # the last one wins: content goes before it
            return
        if tag not in _BLOCK_TAGS:
            return
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth][0] == tag:
                _, start, parts = self._open[depth]
                del self._open[depth:]
                end = self.document.find(">", self._offset()) + 1 or len(self.document)
                text = " ".join("".join(parts).split())
                # A wrapper around the paragraph reads the same text: keep the innermost only.
                if text and not own_text(text) and not any(start <= s and e <= end for s, e in self.blocks):
                    self.blocks.append((start, end))
                return

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._open:
            parts.append(data)


def _scan(document: str) -> _Scanner:
    scanner = _Scanner(document)
    scanner.feed(document)
    scanner.close()
    return scanner


def without_join_link(document: str) -> str:
    """``document`` without Alliance's join-link paragraph(s); unchanged when there is none."""
    for start, end in sorted(_scan(document).blocks, reverse=True):
        document = document[:start] + document[end:]
    return document


def with_join_link(document: str, link: str) -> str:
    """``document`` with one join-link paragraph for ``link``, at the end of its body."""
    cleaned = without_join_link(document)
    end = _scan(cleaned).body_end
    at = len(cleaned) if end is None else end
    return cleaned[:at] + join_paragraph(link) + cleaned[at:]

"""The embedded worker: runs outbox handlers and periodic jobs inside ``alliance serve``.

Interface used by the web app (readyz) and ``alliance serve``; the jobs engineer fills it in.
"""

from __future__ import annotations

from alliance.settings import Settings
from core.store import Store


class EmbeddedWorker:
    """A background thread running the job runner on the embedded default."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._alive = False

    def start(self) -> None:
        self._alive = True

    def stop(self, timeout: float = 10.0) -> None:
        self._alive = False

    def is_alive(self) -> bool:
        """True while the worker loop runs (``/readyz`` reports it)."""
        return self._alive

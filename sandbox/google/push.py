"""Push delivery: Google's header-only webhook POSTs, sent from a background thread.

Google POSTs to the channel's address with no body (``Content-Length: 0``) and everything in
``X-Goog-*`` headers; 200/201/202/204/102 count as delivered, 500/502/503/504 are retried with
exponential backoff, anything else is a failed delivery. The emulator does the same from daemon
threads sharing a queue (one by default; ``settings.push_senders`` for a load test, where Google
delivers many pings at once and in no guaranteed order), so a ``sync`` message may arrive before
the ``watch`` response does — as it may with Google. The threads start on the first message and
stop on :meth:`close`.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from sandbox.google.state import GoogleState

_DELIVERED = {102, 200, 201, 202, 204}
_RETRIED = {500, 502, 503, 504}


@dataclass
class PushMessage:
    channel_id: str
    address: str
    headers: dict[str, str]
    resource_state: str
    message_number: int
    extra: dict[str, Any] = field(default_factory=dict)


class PushDispatcher:
    def __init__(self, state: GoogleState) -> None:
        self._state = state
        self._queue: queue.Queue[PushMessage | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._closed = threading.Event()
        self.log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()

    def submit(self, message: PushMessage) -> None:
        if self._closed.is_set():
            self.record(message, error="emulator closed")
            return
        with self._start_lock:
            if not self._threads:
                for n in range(max(1, int(self._state.settings.push_senders))):
                    thread = threading.Thread(target=self._run, name=f"google-emulator-push-{n}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
        self._queue.put(message)

    def record(self, message: PushMessage, **outcome: Any) -> None:
        entry = {
            "channel_id": message.channel_id,
            "address": message.address,
            "resource_state": message.resource_state,
            "message_number": message.message_number,
            "status": None,
            "attempts": 0,
            "dropped": False,
            "delivered": False,
            "error": None,
        }
        entry.update(outcome)
        with self._log_lock:
            self.log.append(entry)

    def deliveries(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return [dict(e) for e in self.log]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued message was delivered (or gave up); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self) -> None:
        self._closed.set()
        with self._start_lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(trust_env=False) as client:
            while True:
                message = self._queue.get()
                try:
                    if message is None:
                        return
                    if self._closed.is_set():
                        continue  # stopping: what is still queued is dropped, not delivered first
                    self._deliver(client, message)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, message: PushMessage) -> None:
        settings = self._state.settings
        attempts = 0
        status: int | None = None
        error: str | None = None
        while True:
            attempts += 1
            try:
                response = client.post(
                    message.address, headers=message.headers, content=b"", timeout=settings.push_timeout
                )
                status, error = response.status_code, None
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            retry = status in _RETRIED or status is None
            if not retry or attempts > settings.push_retries or self._closed.is_set():
                break
            if self._closed.wait(settings.push_retry_base * 2 ** (attempts - 1)):
                break
        self.record(
            message,
            status=status,
            attempts=attempts,
            error=error,
            delivered=status in _DELIVERED,
        )

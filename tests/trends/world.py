"""A client with a realistic course: sessions synced from a memory calendar, ratings submitted, a no-show.

Times are placed relative to one ``now`` taken when the world is built (days away from every
boundary the rules read), and the same ``now`` is handed to the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.ratings import record_session_end, submit_rating
from core.store import Store
from tests.links.world import LinkWorld


def _scores(bond: str, goals: str, approach: str, overall: str) -> dict[str, str | None]:
    return {"bond": bond, "goals": goals, "approach": approach, "overall": overall}


class Course:
    """Sessions 1-6 of one client; what each one holds is spelled out in ``__init__``."""

    def __init__(self, store: Store, email: str = "therapist@alliance.test") -> None:
        self.store = store
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.world = LinkWorld(store, email)
        self.therapist = self.world.therapist
        self.code = self.world.client(name="Zelda Secretname")
        self.client_id = self._client_id()
        week = timedelta(weeks=1)
        start = self.now - 5 * week
        # 1: 38.5 with one item under 9 (R2)
        self.s1 = self._rated("c1", start, _scores("10", "8.5", "10", "10"))
        # 2: 35.5, below the cutoff in session 2, 3.0 under the last and best total (R1, R3, R4)
        self.s2 = self._rated("c2", start + week, _scores("8.5", "9", "9", "9"))
        # 3: nobody came (R7; session number 3, the next one is attended, so "review")
        self.s3 = self.world.session("c3", start + 2 * week, self.code)
        record_session_end(store, self.s3, ended_at=None, no_show=True)
        # 4: attended, never rated, the link expired (missing)
        self.s4 = self.world.session("c4", start + 3 * week, self.code)
        # 5: the call lasted 5 minutes: no rating was asked for
        s5_start = start + 4 * week
        self.s5 = self.world.session("c5", s5_start, self.code)
        record_session_end(store, self.s5, started_at=s5_start, ended_at=s5_start + timedelta(minutes=5))
        # 6: next week
        self.s6 = self.world.session("c6", self.now + week, self.code)

    def _client_id(self) -> int:
        from core.clients import get_client

        return get_client(self.store, self.therapist, self.code).id

    def _rated(self, uid: str, start: datetime, scores: dict[str, str | None]) -> int:
        session_id = self.world.session(uid, start, self.code)
        submit_rating(
            self.store, session_id, self.client_id, scores, "felt rushed today", now=start + timedelta(hours=1)
        )
        return session_id

    def rate(self, session_id: int, scores: dict[str, str | None]) -> None:
        submit_rating(self.store, session_id, self.client_id, scores)

    def missed_rating(self, uid: str, weeks_ago: float) -> int:
        """Another attended session, long enough ago for its rating to count as missing."""
        return self.world.session(uid, self.now - timedelta(weeks=weeks_ago), self.code)

"""What the alert rules (core.alerts) read from the ratings feature: scores and no-shows per client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.alerts import Scores
from core.clients import get_session
from core.ratings import list_client_ratings, no_show_sessions, record_session_end, submit_rating
from core.store import Store
from tests.links.world import LinkWorld

START = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


def test_ratings_and_no_shows_of_one_client_feed_the_alert_records(store: Store) -> None:
    world = LinkWorld(store)
    code = world.client()
    first = world.session("a", START, code)
    second = world.session("b", START + timedelta(days=7), code)
    third = world.session("c", START + timedelta(days=14), code)
    record_session_end(store, second, ended_at=None, no_show=True)
    record_session_end(
        store, third, started_at=START + timedelta(days=14), ended_at=START + timedelta(days=14, minutes=50)
    )
    client_id = get_session(store, world.therapist, first).client_id
    submit_rating(store, first, client_id, {"bond": "9.5", "goals": "9", "approach": "8.7", "overall": "9.1"})
    ratings = {
        r.session_id: Scores.of(r.bond, r.goals, r.approach, r.overall)
        for r in list_client_ratings(store, world.therapist, client_id)
    }
    assert list(ratings) == [first] and ratings[first].total == Decimal("36.3")
    assert no_show_sessions(store, world.therapist, client_id) == {second}
    other = LinkWorld(store, "other@alliance.test", "home")
    assert no_show_sessions(store, other.therapist, client_id) == set()

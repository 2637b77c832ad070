"""The Outlook emulator, proven with the real MSAL library and plain HTTP against Graph's documented behaviour."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest

from sandbox.outlook import TENANT_ID, USERNAME, OutlookState, RunningEmulator, run_outlook_emulator
from tests.sandbox.outlook_clients import PREFER, SCOPES, drain, graph, msal_app, session, sign_in

WINDOW = "startDateTime=2026-11-01T00:00:00Z&endDateTime=2027-03-01T00:00:00Z"
DELTA = f"/me/calendarView/delta?{WINDOW}"
BERLIN = "W. Europe Standard Time"
# The redirect here is a loopback GET (a desktop sign-in); MSAL recommends form_post for web apps.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


@pytest.fixture(scope="module")
def running() -> Iterator[RunningEmulator]:
    with run_outlook_emulator(OutlookState(seed=3)) as emu:
        yield emu


@pytest.fixture
def emu(running: RunningEmulator) -> RunningEmulator:
    running.state.reset()
    return running


@pytest.fixture
def token(emu: RunningEmulator) -> str:
    return str(emu.state.issue_tokens()["access_token"])


def local(day: str, hour: int, minute: int = 0, zone: str = BERLIN) -> dict[str, str]:
    return {"dateTime": f"{day}T{hour:02d}:{minute:02d}:00", "timeZone": zone}


def single(subject: str, day: str = "2026-12-01", hour: int = 10, **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "start": local(day, hour), "end": local(day, hour, 50), **extra}


def weekly(subject: str, first: str = "2026-12-01", count: int = 4) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": local(first, 18),
        "end": local(first, 18, 50),
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"]},
            "range": {"type": "numbered", "startDate": first, "numberOfOccurrences": count},
        },
    }


# ----- identity: MSAL end to end ------------------------------------------------------------------


def test_msal_code_flow_with_pkce_and_nonce_caches_an_account(emu: RunningEmulator) -> None:
    cache = msal.SerializableTokenCache()
    app = msal_app(emu, cache)
    result = sign_in(emu, app)
    assert "access_token" in result and "refresh_token" in result, result
    assert result["id_token_claims"]["tid"] == TENANT_ID
    assert len(result["id_token_claims"]["nonce"]) == 64  # the hashed nonce MSAL sent (MSAL verified it)
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == [USERNAME]
    # A new app from the serialized cache gets a token silently (the refresh grant when forced).
    again = msal_app(emu, _reloaded(cache))
    silent = again.acquire_token_silent(SCOPES, account=again.get_accounts()[0], force_refresh=True)
    assert silent is not None and silent["access_token"] != result["access_token"]


def _reloaded(cache: msal.SerializableTokenCache) -> msal.SerializableTokenCache:
    fresh = msal.SerializableTokenCache()
    fresh.deserialize(cache.serialize())
    return fresh


def test_authorize_carries_pkce_and_the_id_token_echoes_the_nonce(emu: RunningEmulator) -> None:
    app = msal_app(emu)
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri="http://127.0.0.1:9/cb", response_mode="query")
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"] == [hashlib.sha256(flow["nonce"].encode()).hexdigest()]
    answer = session(emu).get(flow["auth_uri"], allow_redirects=False)
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert params["state"] == flow["state"]
    # A tampered verifier is refused as PKCE demands.
    tampered = dict(flow, code_verifier="x" * 43)
    refused = app.acquire_token_by_auth_code_flow(tampered, params)
    assert refused["error"] == "invalid_grant" and "AADSTS50148" in refused["error_description"]


def test_a_code_is_redeemed_once(emu: RunningEmulator) -> None:
    app = msal_app(emu)
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri="http://127.0.0.1:9/cb", response_mode="query")
    answer = session(emu).get(flow["auth_uri"], allow_redirects=False)
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow), params)
    second = msal_app(emu).acquire_token_by_auth_code_flow(dict(flow), params)
    assert second["error"] == "invalid_grant"


def test_denied_consent_comes_back_as_access_denied(emu: RunningEmulator) -> None:
    emu.state.settings.consent = "deny"
    app = msal_app(emu)
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri="http://127.0.0.1:9/cb", response_mode="query")
    answer = session(emu).get(flow["auth_uri"], allow_redirects=False)
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert params["error"] == "access_denied"
    assert app.acquire_token_by_auth_code_flow(flow, params)["error"] == "access_denied"


def test_revoked_consent_fails_the_refresh_and_the_access_token(emu: RunningEmulator) -> None:
    app = msal_app(emu)
    result = sign_in(emu, app)
    emu.state.revoke_consent()
    silent = app.acquire_token_silent_with_error(SCOPES, account=app.get_accounts()[0], force_refresh=True)
    assert silent is not None and silent["error"] == "invalid_grant"
    assert silent.get("suberror") == "consent_required"
    with graph(emu, result["access_token"]) as client:
        answer = client.get(DELTA)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_token_endpoint_throttling_carries_retry_after(emu: RunningEmulator) -> None:
    app = msal_app(emu)
    sign_in(emu, app)
    emu.state.inject("token", 429, retry_after=7)
    answer = session(emu).post(
        f"{emu.authority}/oauth2/v2.0/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"


# ----- calendarView delta -----------------------------------------------------------------------


def test_delta_pages_to_a_delta_link_and_then_reports_only_changes(emu: RunningEmulator, token: str) -> None:
    ids = [emu.state.seed_event(single(f"S{d}", f"2026-12-{d:02d}"))["id"] for d in range(1, 6)]
    with graph(emu, token) as client:
        first = client.get(DELTA, headers=[*PREFER, ("Prefer", "odata.maxpagesize=2")])
        assert first.headers["Preference-Applied"].startswith("odata.maxpagesize=2")
        assert len(first.json()["value"]) == 2 and "$skiptoken=" in first.json()["@odata.nextLink"]
        items, delta_link = drain(client, DELTA, [*PREFER, ("Prefer", "odata.maxpagesize=2")])
        assert sorted(i["id"] for i in items) == sorted(ids)
        assert "$deltatoken=" in delta_link
        nothing, delta_link = drain(client, delta_link)
        assert nothing == []
        emu.state.update_event(ids[0], {"subject": "renamed"})
        emu.state.delete_event(ids[1])
        changes, _ = drain(client, delta_link)
    by_id = {i["id"]: i for i in changes}
    assert by_id[ids[0]]["subject"] == "renamed"
    assert by_id[ids[1]] == {"@odata.type": "#microsoft.graph.event", "id": ids[1], "@removed": {"reason": "deleted"}}
    assert len(changes) == 2


def test_times_are_utc_by_default_and_in_the_preferred_zone_when_asked(emu: RunningEmulator, token: str) -> None:
    emu.state.seed_event(single("S", "2026-12-01", 10))  # 10:00 Berlin = 09:00 UTC
    with graph(emu, token) as client:
        utc_items, _ = drain(client, DELTA, [("Prefer", 'IdType="ImmutableId"')])
        berlin_items, _ = drain(client, DELTA, [("Prefer", f'outlook.timezone="{BERLIN}", IdType="ImmutableId"')])
    assert utc_items[0]["start"] == {"dateTime": "2026-12-01T09:00:00.0000000", "timeZone": "UTC"}
    assert berlin_items[0]["start"] == {"dateTime": "2026-12-01T10:00:00.0000000", "timeZone": BERLIN}
    assert utc_items[0]["originalStartTimeZone"] == BERLIN


def test_occurrences_are_skeletal_and_exceptions_keep_their_id(emu: RunningEmulator, token: str) -> None:
    master = emu.state.seed_event(weekly("Weekly"))["id"]
    with graph(emu, token) as client:
        items, delta_link = drain(client, DELTA)
        assert len(items) == 4
        assert {tuple(sorted(i)) for i in items} == {
            ("@odata.etag", "@odata.type", "end", "id", "seriesMasterId", "start", "type")
        }
        assert all(i["type"] == "occurrence" and i["seriesMasterId"] == master for i in items)
        second = sorted(items, key=lambda i: i["start"]["dateTime"])[1]
        # Minutes later: changing one instance must not make its siblings "changed" too.
        emu.state.clock = lambda: datetime.now(UTC) + timedelta(minutes=10)
        try:
            moved = client.patch(
                f"/me/events/{second['id']}",
                json={"start": local("2026-12-09", 9), "end": local("2026-12-09", 9, 50)},
                headers=PREFER,
            )
        finally:
            emu.state.clock = lambda: datetime.now(UTC)
        assert moved.status_code == 200 and moved.json()["type"] == "exception"
        assert moved.json()["originalStart"] == "2026-12-08T17:00:00Z"
        changes, _ = drain(client, delta_link)
        master_view = client.get(f"/me/events/{master}", headers=PREFER).json()
    assert [(c["id"], c["type"], c["start"]["dateTime"]) for c in changes] == [
        (second["id"], "exception", "2026-12-09T08:00:00.0000000")
    ]
    assert changes[0]["subject"] == "Weekly" and changes[0]["seriesMasterId"] == master
    assert master_view["type"] == "seriesMaster" and master_view["recurrence"]["pattern"]["type"] == "weekly"


def test_a_weekly_slot_keeps_its_local_time_across_daylight_saving(emu: RunningEmulator, token: str) -> None:
    emu.state.seed_event(weekly("DST", first="2027-03-23", count=2))  # Berlin springs forward on 2027-03-28
    with graph(emu, token) as client:
        items, _ = drain(
            client, "/me/calendarView/delta?startDateTime=2027-03-01T00:00:00Z&endDateTime=2027-04-30T00:00:00Z"
        )
    assert sorted(i["start"]["dateTime"] for i in items) == [
        "2027-03-23T17:00:00.0000000",
        "2027-03-30T16:00:00.0000000",
    ]


def test_deleting_an_occurrence_removes_it_from_the_view(emu: RunningEmulator, token: str) -> None:
    emu.state.seed_event(weekly("Weekly", count=3))
    with graph(emu, token) as client:
        items, delta_link = drain(client, DELTA)
        victim = items[0]["id"]
        assert client.delete(f"/me/events/{victim}").status_code == 204
        changes, _ = drain(client, delta_link)
        assert client.get(f"/me/events/{victim}").status_code == 404
    assert [c["id"] for c in changes if "@removed" in c] == [victim]


def test_expired_delta_tokens_answer_410_sync_state_not_found(emu: RunningEmulator, token: str) -> None:
    emu.state.seed_event(single("S"))
    with graph(emu, token) as client:
        _, delta_link = drain(client, DELTA)
        assert emu.state.expire_delta_tokens() >= 1
        gone = client.get(delta_link, headers=PREFER)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"


def test_empty_pages_replays_and_removed_outside_the_window(emu: RunningEmulator, token: str) -> None:
    far = emu.state.seed_event(single("far", "2028-01-10"))["id"]
    near = emu.state.seed_event(single("near"))["id"]
    emu.state.settings.empty_pages = 0.5
    with graph(emu, token) as client:
        pages = 0
        url = DELTA
        while True:
            body = client.get(url, headers=PREFER).json()
            pages += 1
            if "@odata.deltaLink" in body:
                break
            url = body["@odata.nextLink"]
        assert pages >= 1
        emu.state.settings.empty_pages = 0.0
        emu.state.settings.replays = 1
        emu.state.update_event(far, {"subject": "changed far away"})
        changes, _ = drain(client, body["@odata.deltaLink"])
    assert {"id": far, "@odata.type": "#microsoft.graph.event", "@removed": {"reason": "deleted"}} in changes
    assert [c["id"] for c in changes if "@removed" not in c] == [near]  # a replay of an unchanged item


def test_immutable_ids_survive_a_move_between_folders_default_ids_do_not(emu: RunningEmulator, token: str) -> None:
    created = emu.state.seed_event(single("S"))
    with graph(emu, token) as client:
        before = client.get(f"/me/events/{created['id']}").json()["id"]
        emu.state.move_to_folder(created["id"])
        after_default = client.get(f"/me/events/{created['id']}").json()["id"]
        after_immutable = client.get(f"/me/events/{created['id']}", headers=PREFER).json()["id"]
    assert before == created["rest_id"] and after_default != before
    assert after_immutable == created["id"]


# ----- events CRUD ---------------------------------------------------------------------------------


def test_if_match_with_a_stale_etag_is_412(emu: RunningEmulator, token: str) -> None:
    with graph(emu, token) as client:
        created = client.post("/me/events", json=single("S"), headers=PREFER)
        assert created.status_code == 201
        event = created.json()
        assert event["@odata.etag"] == f'W/"{event["changeKey"]}"'
        ok = client.patch(
            f"/me/events/{event['id']}", json={"subject": "A"}, headers={"If-Match": event["@odata.etag"]}
        )
        assert ok.status_code == 200 and ok.json()["changeKey"] != event["changeKey"]
        stale = client.patch(
            f"/me/events/{event['id']}", json={"subject": "B"}, headers={"If-Match": event["@odata.etag"]}
        )
        assert stale.status_code == 412 and stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
        assert client.get(f"/me/events/{event['id']}").json()["subject"] == "A"


def test_teams_join_url_and_a_tenant_without_teams(emu: RunningEmulator, token: str) -> None:
    body = single("S", isOnlineMeeting=True, onlineMeetingProvider="teamsForBusiness")
    with graph(emu, token) as client:
        with_teams = client.post("/me/events", json=body).json()
        emu.state.settings.teams_available = False
        without = client.post("/me/events", json=body)
    assert with_teams["onlineMeetingProvider"] == "teamsForBusiness"
    assert with_teams["onlineMeeting"]["joinUrl"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert without.status_code == 201
    assert without.json()["isOnlineMeeting"] is False and without.json()["onlineMeetingProvider"] == "unknown"
    assert "onlineMeeting" not in without.json()


def test_bad_input_gets_a_graph_error(emu: RunningEmulator, token: str) -> None:
    with graph(emu, token) as client:
        no_window = client.get("/me/calendarView/delta")
        bad_zone = client.post("/me/events", json=single("S") | {"start": local("2026-12-01", 10, zone="Mars/Olympus")})
    assert no_window.status_code == 400 and no_window.json()["error"]["code"] == "ErrorInvalidParameter"
    assert bad_zone.status_code == 400 and "Mars/Olympus" in bad_zone.json()["error"]["message"]


def test_more_than_four_concurrent_requests_are_throttled(emu: RunningEmulator, token: str) -> None:
    emu.state.settings.latency = 0.3
    statuses: list[int] = []

    def call() -> None:
        with graph(emu, token) as client:
            statuses.append(client.get(DELTA).status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses).count(200) <= 4 and 429 in statuses


def test_injected_graph_faults_carry_retry_after(emu: RunningEmulator, token: str) -> None:
    emu.state.inject("delta", 429, retry_after=3)
    with graph(emu, token) as client:
        throttled = client.get(DELTA)
        fine = client.get(DELTA)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert fine.status_code == 200


def test_access_tokens_expire(emu: RunningEmulator) -> None:
    clock = [datetime(2026, 11, 27, tzinfo=UTC)]
    emu.state.clock = lambda: clock[0]
    try:
        token = emu.state.issue_tokens()["access_token"]
        clock[0] += timedelta(hours=2)
        with graph(emu, token) as client:
            assert client.get(DELTA).status_code == 401
    finally:
        emu.state.clock = lambda: datetime.now(UTC)


def test_bodies_come_back_as_html_unless_text_is_preferred(emu: RunningEmulator, token: str) -> None:
    fragment = "<p>Bring the <b>intake form</b> &amp; ID.</p><ul><li>Room 2</li></ul>"
    with graph(emu, token) as client:
        typed = client.post("/me/events", json=single("S", body={"contentType": "text", "content": "a < b\nRoom 2"}))
        rich = client.post("/me/events", json=single("S", body={"contentType": "html", "content": fragment}))
        bad = client.post("/me/events", json=single("S", body={"contentType": "rtf", "content": "x"}))
        as_html = client.get(f"/me/events/{typed.json()['id']}")
        as_text = client.get(f"/me/events/{rich.json()['id']}", headers={"Prefer": 'outlook.body-content-type="text"'})
    # No preference: HTML, a text body escaped and wrapped in a document (no Preference-Applied).
    assert as_html.json()["body"]["contentType"] == "html" and "Preference-Applied" not in as_html.headers
    assert "<body>" in as_html.json()["body"]["content"] and "a &lt; b<br>Room 2" in as_html.json()["body"]["content"]
    # An HTML fragment is kept as written inside the document Outlook stores.
    stored = rich.json()["body"]["content"]
    assert stored.startswith("<html>") and fragment in stored
    assert as_text.json()["body"] == {"contentType": "text", "content": "Bring the intake form & ID.\nRoom 2"}
    assert as_text.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    assert as_text.json()["bodyPreview"] == "Bring the intake form & ID.\nRoom 2"
    assert bad.status_code == 400 and "contentType" in bad.json()["error"]["message"]


# ----- JSON batching -------------------------------------------------------------------------------


def _batch(client: Any, requests: list[dict[str, Any]]) -> Any:
    return client.post("/$batch", json={"requests": requests})


def test_a_batch_answers_each_request_with_its_own_status_and_records_each(emu: RunningEmulator, token: str) -> None:
    with graph(emu, token) as client:
        ids = [client.post("/me/events", json=single(f"S{n}"), headers=PREFER).json()["id"] for n in range(2)]
        emu.state.log.clear()
        text = {"Prefer": 'IdType="ImmutableId", outlook.body-content-type="text"'}
        answer = _batch(
            client,
            [
                {"id": "a", "method": "GET", "url": f"/me/events/{ids[0]}", "headers": text},
                {"id": "b", "method": "GET", "url": f"me/events/{ids[1]}"},
                {"id": "c", "method": "GET", "url": "/me/events/AAkALgAAunknown"},
            ],
        )
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert {k: r["status"] for k, r in by_id.items()} == {"a": 200, "b": 200, "c": 404}
    assert by_id["a"]["body"]["subject"] == "S0" and by_id["a"]["body"]["body"]["contentType"] == "text"
    # Each request has its own preferences only: "b" asked for none, its body is HTML.
    assert by_id["b"]["body"]["subject"] == "S1" and by_id["b"]["body"]["body"]["contentType"] == "html"
    assert by_id["c"]["body"]["error"]["code"] == "ErrorItemNotFound"
    # The batch and each of its requests are in the request log, as separate calls would be.
    assert [r.method for r in emu.state.requests("/v1.0/$batch")] == ["POST"]
    assert sorted(r.status for r in emu.state.requests("/v1.0/me/events/", method="GET")) == [200, 200, 404]


def test_a_malformed_batch_is_refused_whole(emu: RunningEmulator, token: str) -> None:
    get = {"method": "GET", "url": "/me/events"}
    with graph(emu, token) as client:
        too_many = _batch(client, [{"id": str(n), **get} for n in range(21)])
        twice = _batch(client, [{"id": "1", **get}, {"id": "1", **get}])
        dangling = _batch(client, [{"id": "1", **get, "dependsOn": ["9"]}])
        not_json = client.post("/$batch", content=b"{", headers={"Content-Type": "application/json"})
    for refused in (too_many, twice, dangling, not_json):
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"
    assert "20" in too_many.json()["error"]["message"] and "twice" in twice.json()["error"]["message"]
    assert emu.state.requests("/v1.0/me/events") == []  # nothing of a refused batch ran


def test_batch_requests_count_against_the_mailbox_limit_unless_sequenced(emu: RunningEmulator, token: str) -> None:
    with graph(emu, token) as client:
        event = client.post("/me/events", json=single("S"), headers=PREFER).json()["id"]
        emu.state.settings.max_concurrent = 2
        emu.state.settings.latency = 0.2
        get = {"method": "GET", "url": f"/me/events/{event}"}
        parallel = _batch(client, [{"id": str(n), **get} for n in range(4)])
        chain = [{"id": str(n), **get, **({"dependsOn": [str(n - 1)]} if n else {})} for n in range(4)]
        chained = _batch(client, chain)
    statuses = sorted(r["status"] for r in parallel.json()["responses"])
    assert statuses.count(200) == 2 and statuses.count(429) == 2  # dispatched four at a time
    throttled = next(r for r in parallel.json()["responses"] if r["status"] == 429)
    assert throttled["body"]["error"]["code"] == "ApplicationThrottled" and throttled["headers"]["retry-after"] == "1"
    assert [r["status"] for r in chained.json()["responses"]] == [200, 200, 200, 200]  # one after another


def test_a_request_whose_dependency_failed_answers_424(emu: RunningEmulator, token: str) -> None:
    with graph(emu, token) as client:
        event = client.post("/me/events", json=single("S"), headers=PREFER).json()["id"]
        emu.state.log.clear()
        answer = _batch(
            client,
            [
                {"id": "1", "method": "GET", "url": "/me/events/AAkALgAAgone"},
                {"id": "2", "method": "GET", "url": f"/me/events/{event}", "dependsOn": ["1"]},
                {"id": "3", "method": "GET", "url": f"/me/events/{event}"},
            ],
        )
    by_id = {r["id"]: r["status"] for r in answer.json()["responses"]}
    assert by_id == {"1": 404, "2": 424, "3": 200}
    assert len(emu.state.requests("/v1.0/me/events/", method="GET")) == 2  # the dependent one never ran

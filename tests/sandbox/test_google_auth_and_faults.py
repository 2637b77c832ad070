"""OAuth (authlib code flow with PKCE, google-auth refresh, revocation) and injected faults."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request as GoogleAuthRequest
from googleapiclient.errors import HttpError

from sandbox.google import CALENDAR_SCOPE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningEmulator
from tests.sandbox.conftest import error_reason, make_credentials, make_service

REDIRECT_URI = "http://127.0.0.1:8765/oauth/google/callback"


def _session() -> OAuth2Session:
    session = OAuth2Session(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        scope=CALENDAR_SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    session.trust_env = False
    return session


def _authorize(emu: RunningEmulator, session: OAuth2Session, verifier: str, **extra: str) -> str:
    """Open the authorization URL; return the callback URL the browser would be sent to."""
    uri, state = session.create_authorization_url(emu.authorize_url, code_verifier=verifier, **extra)
    response = httpx.get(uri, follow_redirects=False, trust_env=False)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["state"] == [state]
    return location


def test_code_flow_with_pkce_then_calendar_calls_and_refresh(emulator: RunningEmulator) -> None:
    session = _session()
    verifier = generate_token(64)
    callback = _authorize(emulator, session, verifier, access_type="offline", prompt="consent")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    assert query["code"] and query["scope"] == [CALENDAR_SCOPE]
    sent = emulator.state.requests("/o/oauth2/v2/auth")[0]["query"]
    assert sent["code_challenge_method"] == ["S256"] and len(sent["code_challenge"][0]) == 43
    assert sent["access_type"] == ["offline"] and sent["prompt"] == ["consent"]

    token = session.fetch_token(emulator.token_uri, authorization_response=callback, code_verifier=verifier)
    assert token["token_type"] == "Bearer" and token["refresh_token"] and token["expires_in"] > 0
    assert token["scope"] == CALENDAR_SCOPE

    # the code is single-use
    with pytest.raises(Exception, match="invalid_grant"):
        session.fetch_token(emulator.token_uri, authorization_response=callback, code_verifier=verifier)

    # hand the tokens to google-auth + googleapiclient, as production code will
    service = make_service(emulator, make_credentials(emulator, token))
    assert service.events().list(calendarId="primary").execute()["items"] == []

    # access token goes stale -> 401 -> google-auth refreshes against /token and retries
    emulator.state.expire_access_tokens()
    assert service.events().list(calendarId="primary").execute()["items"] == []
    calls = [(r["method"], r["path"], r["status"]) for r in emulator.state.requests()][-3:]
    assert calls == [
        ("GET", "/calendar/v3/calendars/primary/events", 401),
        ("POST", "/token", 200),
        ("GET", "/calendar/v3/calendars/primary/events", 200),
    ]

    # authlib's own refresh works too
    refreshed = session.refresh_token(emulator.token_uri, refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]


def test_pkce_verifier_and_redirect_checks(emulator: RunningEmulator) -> None:
    session = _session()
    verifier = generate_token(64)
    callback = _authorize(emulator, session, verifier, access_type="offline")
    with pytest.raises(Exception, match="invalid_grant"):
        session.fetch_token(emulator.token_uri, authorization_response=callback, code_verifier=generate_token(64))

    # an unregistered redirect URI is an error page, never a redirect
    bad = _session()
    bad.redirect_uri = "https://evil.example/callback"
    uri, _ = bad.create_authorization_url(emulator.authorize_url, code_verifier=verifier)
    response = httpx.get(uri, follow_redirects=False, trust_env=False)
    assert response.status_code == 400 and "redirect_uri_mismatch" in response.text

    # the user says no
    emulator.state.settings.consent = "deny"
    denied = _authorize(emulator, _session(), verifier)
    assert "error=access_denied" in denied


def test_refresh_token_only_on_consent_for_offline_access(emulator: RunningEmulator) -> None:
    verifier = generate_token(64)
    first = _session()
    token = first.fetch_token(
        emulator.token_uri,
        authorization_response=_authorize(emulator, first, verifier, access_type="offline"),
        code_verifier=verifier,
    )
    assert "refresh_token" in token  # first consent
    again = _session()
    token = again.fetch_token(
        emulator.token_uri,
        authorization_response=_authorize(emulator, again, verifier, access_type="offline"),
        code_verifier=verifier,
    )
    assert "refresh_token" not in token  # no consent screen this time (prompt=consent missing)


def test_interactive_consent_page(emulator: RunningEmulator) -> None:
    session = _session()
    verifier = generate_token(64)
    uri, _ = session.create_authorization_url(emulator.authorize_url, code_verifier=verifier, interactive="1")
    with httpx.Client(trust_env=False) as client:
        page = client.get(uri)
        assert page.status_code == 200 and "Allow" in page.text
        ticket = page.text.split('name="ticket" value="')[1].split('"')[0]
        answer = client.post(
            emulator.authorize_url + "/decision", data={"ticket": ticket, "decision": "allow"}, follow_redirects=False
        )
    assert answer.status_code == 302 and "code=" in answer.headers["location"]


def test_revoked_consent_is_invalid_grant(emulator: RunningEmulator) -> None:
    credentials = make_credentials(emulator)
    credentials.refresh(GoogleAuthRequest())  # works while consent stands
    service = make_service(emulator, credentials)
    assert emulator.state.revoke_consent() == 1

    with pytest.raises(RefreshError) as caught:
        credentials.refresh(GoogleAuthRequest())
    assert "invalid_grant" in str(caught.value)
    # the API call sees 401, tries to refresh, and surfaces the RefreshError
    with pytest.raises(RefreshError):
        service.events().list(calendarId="primary").execute()


def test_missing_or_bad_bearer_token_is_401(emulator: RunningEmulator) -> None:
    url = emulator.api_endpoint + "calendars/primary/events"
    missing = httpx.get(url, trust_env=False)
    assert missing.status_code == 401
    assert missing.json()["error"]["errors"][0]["reason"] == "required"
    bad = httpx.get(url, headers={"Authorization": "Bearer nope"}, trust_env=False)
    body = bad.json()["error"]
    assert bad.status_code == 401 and body["status"] == "UNAUTHENTICATED"
    assert body["errors"][0] == {
        "domain": "global",
        "reason": "authError",
        "message": "Invalid Credentials",
        "locationType": "header",
        "location": "Authorization",
    }


@pytest.mark.parametrize(
    ("reason", "status", "wire_reason"),
    [
        ("rateLimitExceeded", 403, "rateLimitExceeded"),
        ("rateLimitExceeded429", 429, "rateLimitExceeded"),
        ("quotaExceeded", 403, "quotaExceeded"),
        ("backendError", 500, "backendError"),
    ],
)
def test_injected_errors_reach_the_client(
    emulator: RunningEmulator, service: Any, reason: str, status: int, wire_reason: str
) -> None:
    emulator.state.inject_fault(reason, path="/calendar/v3/calendars/primary/events", count=2, retry_after=7)
    for _ in range(2):
        with pytest.raises(HttpError) as caught:
            service.events().list(calendarId="primary").execute()
        assert caught.value.status_code == status
        assert error_reason(caught.value) == wire_reason
        assert caught.value.resp["retry-after"] == "7"
        assert json.loads(caught.value.content)["error"]["code"] == status
    assert service.events().list(calendarId="primary").execute()["items"] == []  # the fault is used up
    assert [r["fault"] for r in emulator.state.requests()] == [wire_reason, wire_reason, None]


def test_canned_fault_with_another_status(emulator: RunningEmulator, service: Any) -> None:
    emulator.state.inject_fault("rateLimitExceeded", status=429, method="POST")
    with pytest.raises(HttpError) as caught:
        service.events().insert(calendarId="primary", body={}).execute()
    assert caught.value.status_code == 429 and error_reason(caught.value) == "rateLimitExceeded"
    assert json.loads(caught.value.content)["error"]["errors"][0]["domain"] == "usageLimits"


def test_googleapiclient_retries_rate_limits_but_not_quota(emulator: RunningEmulator, service: Any) -> None:
    emulator.state.inject_fault("rateLimitExceeded", count=1)
    assert service.events().list(calendarId="primary").execute(num_retries=2)["items"] == []
    emulator.state.inject_fault("quotaExceeded", count=1)
    with pytest.raises(HttpError):
        service.events().list(calendarId="primary").execute(num_retries=2)
    assert len(emulator.state.requests("/calendar/v3/")) == 3


def test_delay_beyond_the_client_timeout(emulator: RunningEmulator) -> None:
    service = make_service(emulator, timeout=0.5)
    emulator.state.inject_fault(None, delay=3.0, method="GET")
    with pytest.raises(TimeoutError):
        service.events().list(calendarId="primary").execute()
    assert service.events().list(calendarId="primary").execute()["items"] == []


def test_faults_on_the_token_endpoint(emulator: RunningEmulator) -> None:
    credentials = make_credentials(emulator)
    emulator.state.inject_fault("backendError", path="/token", count=1)
    credentials.refresh(GoogleAuthRequest())  # google-auth retries a 500 from the token endpoint
    assert [r["status"] for r in emulator.state.requests("/token")] == [500, 200]


def test_control_api_over_http(emulator: RunningEmulator) -> None:
    with httpx.Client(base_url=emulator.base_url + "/_emulator", trust_env=False) as control:
        seeded = control.post(
            "/calendars/primary/events",
            json={"events": [{"summary": "A", "start": {"date": "2026-11-02"}, "end": {"date": "2026-11-03"}}]},
        ).json()["items"]
        moved = control.post(
            f"/calendars/primary/events/{seeded[0]['id']}/move", json={"start": {"date": "2026-11-04"}}
        ).json()
        assert moved["start"] == {"date": "2026-11-04"} and moved["end"] == {"date": "2026-11-05"}
        assert control.post("/faults", json={"reason": "quotaExceeded", "count": 1}).status_code == 200
        tokens = control.post("/oauth/tokens", json={}).json()
        listed = httpx.get(
            emulator.api_endpoint + "calendars/primary/events",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            trust_env=False,
        )
        assert listed.status_code == 403
        log = control.get("/requests").json()["items"]
        assert [(r["path"], r["status"]) for r in log] == [("/calendar/v3/calendars/primary/events", 403)]
        assert control.post("/sync-tokens/expire", json={}).json() == {"expired": 0}
        state = control.get("/state").json()
        assert state["calendars"]["therapist@example.com"]["events"] == 1
        assert control.put("/settings", json={"access_token_ttl": 60}).json()["access_token_ttl"] == 60

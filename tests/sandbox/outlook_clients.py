"""The real MSAL and a plain httpx Graph client, aimed at the Outlook emulator (test helpers)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import msal
import requests

from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningEmulator

SCOPES = ["Calendars.ReadWrite"]
PREFER = [("Prefer", 'IdType="ImmutableId"'), ("Prefer", 'outlook.timezone="UTC"')]


class TrustingSession(requests.Session):
    """A requests session that trusts the emulator's CA even when REQUESTS_CA_BUNDLE is set.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace ``Session.verify`` (psf/requests#3829);
    this machine sets both, so a plain ``verify=`` would silently not apply.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        pinned = self.verify if verify in (None, True) else verify
        return super().merge_environment_settings(url, proxies, stream, pinned, cert)


def session(emu: RunningEmulator) -> TrustingSession:
    s = TrustingSession()
    s.verify = str(emu.ca_file)
    return s


def msal_app(
    emu: RunningEmulator, cache: msal.SerializableTokenCache | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=DEFAULT_CLIENT_SECRET,
        authority=emu.authority,
        instance_discovery=False,
        http_client=session(emu),
        token_cache=cache or msal.SerializableTokenCache(),
    )


def sign_in(emu: RunningEmulator, app: msal.ConfidentialClientApplication) -> dict[str, Any]:
    """The auth code flow with PKCE, the browser step done by following the authorize redirect."""
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri="http://127.0.0.1:9/callback", response_mode="query")
    answer = session(emu).get(flow["auth_uri"], allow_redirects=False)
    params = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
    result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, params)
    return result


@contextmanager
def graph(emu: RunningEmulator, token: str) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(emu.ca_file))
    with httpx.Client(
        base_url=emu.graph_url, verify=context, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


def drain(
    client: httpx.Client, url: str, headers: list[tuple[str, str]] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Follow nextLinks to the deltaLink; returns (items of every page, the deltaLink)."""
    items: list[dict[str, Any]] = []
    for _ in range(10_000):
        page = client.get(url, headers=headers or PREFER)
        page.raise_for_status()
        body = page.json()
        items.extend(body["value"])
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]
    raise AssertionError("the delta never ended")

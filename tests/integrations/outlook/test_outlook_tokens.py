"""One token refresh at a time per Outlook connection: jobs running at once (a sync, the subscription
upkeep, a write-back) each build their own provider, and still redeem the refresh token once and
store one cache, through the real MSAL against the emulator's token endpoint."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from integrations.outlook import OutlookProvider
from tests.integrations.outlook.world import OutlookWorld, at, connect, timed

TOKEN_PATH = "/oauth2/v2.0/token"


def _refresh_grants(outlook: OutlookWorld) -> int:
    return len(outlook.state.requests(TOKEN_PATH))


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; their results in order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def _clear_log(outlook: OutlookWorld) -> None:
    with outlook.state.lock:
        outlook.state.log.clear()


def _connect_with_short_token(outlook: OutlookWorld) -> None:
    # An access token with less than MSAL's five minutes left: the next use redeems the refresh token.
    outlook.state.settings.access_token_seconds = 200
    outlook.connection = connect(outlook.emu)
    outlook.state.settings.access_token_seconds = 3600
    _clear_log(outlook)


def test_two_jobs_needing_a_fresh_token_at_once_refresh_it_once(outlook: OutlookWorld) -> None:
    _connect_with_short_token(outlook)
    providers: list[OutlookProvider] = [outlook.provider() for _ in range(4)]  # four jobs, four providers

    tokens = _at_once([p.tokens.access_token for p in providers])

    assert _refresh_grants(outlook) == 1
    assert len(set(tokens)) == 1  # everyone got the one new token
    assert len(outlook.saved) == 1  # one new cache stored, not four competing ones
    # The stored cache serves the next provider (another run) without another refresh, and so do
    # settings a job read before the refresh was stored: the old cache does not come back.
    fresh = outlook.provider(outlook.saved[-1])
    late = outlook.provider(outlook.settings())
    assert fresh.tokens.access_token() == late.tokens.access_token() == tokens[0]
    assert _refresh_grants(outlook) == 1


def test_a_401_seen_by_two_syncs_at_once_is_refreshed_once(outlook: OutlookWorld) -> None:
    outlook.seed({"subject": "S", **timed(at(2))})
    first, second = outlook.provider(), outlook.provider()
    first.tokens.access_token()
    outlook.state.expire_access_tokens()  # Graph now answers 401 to the cached token
    _clear_log(outlook)

    pages = _at_once([lambda: list(first.list_changes(None)), lambda: list(second.list_changes(None))])

    assert all(len(p[-1].upserts) == 1 for p in pages)
    assert _refresh_grants(outlook) == 1


def test_a_reconnect_stored_meanwhile_replaces_the_shared_cache(outlook: OutlookWorld) -> None:
    old = outlook.provider()
    old.tokens.access_token()
    outlook.state.revoke_consent()
    reconnected = connect(outlook.emu)  # the therapist connected again: a new grant and cache
    outlook.state.expire_access_tokens()

    # Built from the stored (new) settings while the old provider is still alive in this process.
    provider = outlook.provider(dict(reconnected))
    outlook.seed({"subject": "S", **timed(at(2))})
    (page,) = list(provider.list_changes(None))
    assert [o.title for o in page.upserts] == ["S"]


def test_the_requests_of_one_sync_ask_msal_once(outlook: OutlookWorld, monkeypatch: Any) -> None:
    import msal

    for n in range(6):
        outlook.seed({"subject": f"S{n}", **timed(at(n + 1))})
    asked: list[bool] = []
    silent = msal.ConfidentialClientApplication.acquire_token_silent_with_error

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(bool(kwargs.get("force_refresh")))
        return silent(self, *args, **kwargs)

    monkeypatch.setattr(msal.ConfidentialClientApplication, "acquire_token_silent_with_error", counting)
    provider = outlook.provider(outlook.settings() | {"page_size": 2})

    pages = list(provider.list_changes(None))

    assert len(pages) >= 3 and sum(len(p.upserts) for p in pages) == 6
    assert asked == [False]  # one silent acquisition; the token it gave served every page
    # Graph refusing that token still gets a refresh at once, not the remembered token again.
    outlook.state.expire_access_tokens()
    assert len(list(provider.list_changes(None))[-1].upserts) >= 1
    assert asked[1:] == [True]

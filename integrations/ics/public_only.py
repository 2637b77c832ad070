"""Feeds added by therapists on the web may reach public addresses only.

A feed URL is fetched by the server. Without this guard, anyone with an account could make it
read what only the server can reach: the database port, an admin page on the loopback interface,
a cloud provider's metadata service (169.254.169.254) with its credentials. Operators adding a
feed from the command line are trusted and unrestricted; the web API marks its feeds
``public_only`` (unless ``ALLIANCE_ALLOW_PRIVATE_FEEDS`` says otherwise).

The check runs on every request, redirects included, at connection time: the host name is
resolved once, every address it resolves to must be global, and the connection goes to the
address that was checked (the URL is pinned to it; Host and TLS server name stay the host name),
so a DNS answer that changes between check and connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

from core.sync.types import SourceError

__all__ = ["PrivateAddress", "PublicOnlyTransport", "UnresolvableHost", "check_public_host"]


class PrivateAddress(SourceError):
    """The host resolves to a loopback, private, link-local or otherwise non-public address."""


class UnresolvableHost(SourceError):
    """The host name does not resolve (now)."""


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnresolvableHost(f"the calendar server name {host} could not be resolved") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_public_host(host: str, port: int) -> str:
    """The address to connect to for ``host``; :class:`SourceError` unless all of its addresses are public."""
    addresses = _addresses(host, port)
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if not (mapped or ip).is_global:
            raise PrivateAddress(
                f"the calendar server {host} is at a private or local address ({address}); "
                "feeds added on the web must be on the public internet"
            )
    if not addresses:  # pragma: no cover - getaddrinfo answers at least one address or raises
        raise UnresolvableHost(f"the calendar server name {host} could not be resolved")
    return addresses[0]


class PublicOnlyTransport(httpx.HTTPTransport):
    """An HTTP transport that connects to public addresses only, pinned to the address it checked."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = check_public_host(host, port)
        if address != host:
            # Host header (set from the original URL) and TLS SNI + certificate check keep the name.
            request.url = request.url.copy_with(host=address)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return super().handle_request(request)

"""Where webhooks may go: public https endpoints, plus the hosts an operator allows.

A tenant's webhook URL is configuration we cannot fully trust. Pointed at 127.0.0.1, the cloud
metadata service (169.254.169.254) or a private network, it would have us post signed requests
carrying names and addresses inside our own network (SSRF). So the rules apply twice: to the URL
as written, when the settings are read (a clear error at startup), and to every address its host
resolves to, each time a connection opens (a public name can resolve to a private address, or
start to later: DNS rebinding). WEBHOOK_ALLOWED_HOSTS lists the exceptions (local receivers,
a partner's endpoint on a private link); an allowed host may also use plain http.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What each refused range is, checked in order, so an error names the rule that applied.
# (ipaddress's own flags miss the shared CGNAT range and lump several of these together.)
REFUSED: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...] = tuple(
    (kind, tuple(ipaddress.ip_network(n) for n in networks))
    for kind, networks in (
        ("unspecified", ("0.0.0.0/8", "::/128")),
        ("loopback", ("127.0.0.0/8", "::1/128")),
        ("link-local", ("169.254.0.0/16", "fe80::/10")),  # 169.254.169.254: cloud metadata
        ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")),
        ("shared (CGNAT)", ("100.64.0.0/10",)),
        ("multicast", ("224.0.0.0/4", "ff00::/8")),
        ("reserved", ("240.0.0.0/4",)),  # with 255.255.255.255, the broadcast address
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses that carry an IPv4 one


def refused_kind(address: IPAddress) -> str | None:
    """Which refused kind of address this is (None: a public one). An IPv6 address that embeds
    an IPv4 one (::ffff:127.0.0.1, 6to4, NAT64) is judged by the address it embeds."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refused_kind(embedded)
    for kind, networks in REFUSED:
        if any(address in network for network in networks):
            return kind
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def normalised(host: str) -> str:
    """Host names compare case-insensitively, without brackets or a trailing dot; addresses in
    their canonical form (so "::0001" and "::1" are the same host)."""
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    address = _literal(host)
    return str(address) if address is not None else host


@dataclass(frozen=True)
class WebhookRules:
    """The rules, with the operator's exceptions (WEBHOOK_ALLOWED_HOSTS: names or addresses)."""

    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def allowing(cls, hosts: Iterable[str]) -> WebhookRules:
        return cls(frozenset(normalised(h) for h in hosts if h.strip()))

    def allows(self, host: str) -> bool:
        return normalised(host) in self.allowed_hosts

    def url_problem(self, url: str) -> str | None:
        """What is wrong with a webhook URL as written (None: nothing). Names are checked once
        resolved, when a connection opens (see `address_problem`)."""
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            return "not a valid URL"
        scheme = parts.scheme.lower()
        if not host or scheme not in ("http", "https"):
            return "not an http(s) URL with a host"
        allowed = self.allows(host)
        if scheme != "https" and not allowed:
            return (
                f"https is required (plain http is only for hosts in WEBHOOK_ALLOWED_HOSTS, "
                f"which {normalised(host)} is not)"
            )
        if allowed:
            return None
        address = _literal(normalised(host))
        if address is None:
            if normalised(host) == "localhost" or normalised(host).endswith(".localhost"):
                return f"host {normalised(host)} is a loopback name{_HINT}"
            return None
        return self.address_problem(host, address)

    def address_problem(self, host: str, address: IPAddress) -> str | None:
        """Why `host` may not be reached at `address`, one of its addresses (None: it may)."""
        if self.allows(host) or str(address) in self.allowed_hosts:
            return None
        kind = refused_kind(address)
        if kind is None:
            return None
        if normalised(host) == str(address):
            return f"host {address} is a {kind} address{_HINT}"
        return f"host {normalised(host)} resolves to {address}, a {kind} address{_HINT}"


_HINT = " (refused unless listed in WEBHOOK_ALLOWED_HOSTS)"

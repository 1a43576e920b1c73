"""Which addresses a rule's webhook may call (adr/0110).

A webhook URL is tenant input that the platform then requests from inside its own network: without a
check it reaches loopback services, the cloud metadata endpoint (169.254.169.254), Postgres, Kafka's
admin ports, anything private (server-side request forgery). Only public unicast addresses are allowed,
unless the operator's allow-list (``FLEETSTREAM_WEBHOOK_ALLOW``: CIDRs and host names, comma-separated)
names the target, for tests and on-premises installs whose receivers are private.

The same policy runs twice: when the gateway saves a rule (the URL's literal address, or every address its
name resolves to now) and when the rules agent sends (every address the name resolves to then, checked in
the resolver the HTTP client connects with, so a name re-pointed after the rule was saved is caught).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def refused_kind(ip: Address) -> str | None:
    """What kind of non-public address ``ip`` is ("loopback", "private" …), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address carried inside IPv6 is judged as itself
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None and (kind := refused_kind(inner)):
            return kind
    kinds = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
             ("multicast", ip.is_multicast), ("private", ip.is_private), ("reserved", ip.is_reserved))
    for kind, hit in kinds:
        if hit:
            return kind
    if not ip.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), documentation ranges
        return "non-public"
    return None


@dataclass(frozen=True)
class WebhookPolicy:
    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, allow: str | Iterable[str] | None) -> WebhookPolicy:
        """``allow``: CIDRs or addresses (``10.0.0.0/8``, ``127.0.0.1``) and host names, comma-separated."""
        items = allow.split(",") if isinstance(allow, str) else list(allow or ())
        networks, hosts = [], set()
        for item in (i.strip() for i in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def problem(self, ip: str | Address) -> str | None:
        """Why the platform must not connect to ``ip``, or None."""
        ip = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)  # drop an IPv6 zone
        if any(ip in net for net in self.networks):
            return None
        kind = refused_kind(ip)
        return f"{ip} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} address" if kind else None

    def url_problem(self, url: str) -> str | None:
        """What is wrong with ``url`` without resolving it: scheme, missing host, a refused literal address."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return f"scheme {parts.scheme!r} is not http or https"
        host = parts.hostname
        if not host:
            return "the URL has no host"
        if self.host_allowed(host):
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: judged by what it resolves to
        return self.problem(host)

    def resolved_problem(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why ``host`` must not be called given the addresses it resolves to (any refused one is enough:
        the client may pick any of them)."""
        if self.host_allowed(host):
            return None
        for addr in addresses:
            if problem := self.problem(addr):
                return f"{host} resolves to {problem.replace(' is a ', ', a ', 1)}"
        return None

    def check(self, url: str, *, resolve: bool = True) -> str | None:
        """``url_problem``, then (``resolve``) the addresses its name resolves to now. A name that does not
        resolve passes here: the sender checks again when it connects."""
        if problem := self.url_problem(url):
            return problem
        host = urlsplit(url).hostname or ""
        if not resolve or self.host_allowed(host):
            return None
        try:
            ipaddress.ip_address(host)
            return None  # a literal address was judged by url_problem
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return None
        return self.resolved_problem(host, [info[4][0] for info in infos])


REFUSED_HINT = "webhooks may only call public addresses unless the platform's webhook allow-list names the target"

"""The one way the server talks to a tracker: an `httpx.Client` that reaches only what the operator allows.

A facilitator types the tracker's address, so the server must not become a way into the networks
it sits in. Every request of a connector goes through `GuardedTransport`, which

- reaches only hosts named in TRACKER_ALLOWED_HOSTS (a bare name: ports 80 and 443; `name:port`:
  that port), over http or https;
- resolves the name itself and refuses loopback, private, link-local, multicast, reserved and
  unspecified addresses unless TRACKER_ALLOW_PRIVATE is set, then connects to the very address it
  checked (the Host header and TLS's server name stay the tracker's name, and the certificate is
  checked against it): a name that resolves elsewhere a moment later changes nothing;
- never follows a redirect, which could lead anywhere;
- gives up after 3 seconds to connect and 10 in all, and on an answer larger than 5 MiB, read in
  pieces so that a larger one is never held.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from flask import current_app
from flask_babel import gettext as _

from .base import TrackerError

CONNECT_SECONDS = 3.0
TOTAL_SECONDS = 10.0
MAX_ANSWER_BYTES = 5 * 1024 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Policy:
    """What the operator allows: which hosts (name → ports, an empty set meaning 80 and 443) and
    whether their addresses may be private."""

    hosts: dict[str, frozenset[int]]
    allow_private: bool

    @classmethod
    def from_config(cls, allowed: str, allow_private: bool) -> Policy:
        """The policy of TRACKER_ALLOWED_HOSTS and TRACKER_ALLOW_PRIVATE; entries that are not a
        host name or host:port are left out (the connect page lists what is allowed)."""
        hosts: dict[str, set[int]] = {}
        for entry in allowed.split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                parts = urlsplit("//" + entry)
                host, port = parts.hostname, parts.port
            except ValueError:
                continue
            if not host or parts.path or parts.username or parts.password:
                continue
            ports = hosts.setdefault(ascii_host(host), set())
            if port is not None:
                ports.add(port)
        return cls({host: frozenset(ports) for host, ports in hosts.items()}, allow_private)

    def allows(self, host: str, port: int) -> bool:
        """Whether the operator allows this host on this port."""
        ports = self.hosts.get(ascii_host(host))
        if ports is None:
            return False
        return port in ports if ports else port in DEFAULT_PORTS.values()

    def describe(self) -> list[str]:
        """The allowed hosts as the operator wrote them, for the connect page."""
        return [
            f"{host}:{port}" if ports else host
            for host, ports in sorted(self.hosts.items())
            for port in (sorted(ports) or [0])
        ]


def ascii_host(host: str) -> str:
    """A host name as DNS knows it: lower case, international names in their xn-- form."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def current_policy() -> Policy:
    """The policy the app's configuration sets."""
    return Policy.from_config(
        str(current_app.config.get("TRACKER_ALLOWED_HOSTS") or ""),
        bool(current_app.config.get("TRACKER_ALLOW_PRIVATE")),
    )


def forbidden_address(address: IPAddress) -> bool:
    """Whether an address is inside a network rather than on the Internet: loopback, private,
    link-local, multicast, reserved, unspecified, or anything else not globally reachable."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses a host name stands for (an address stands for itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise TrackerError(_("The tracker's address %(host)s could not be found.", host=host)) from error
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class CappedStream(httpx.SyncByteStream):
    """An answer's body, refused once it passes MAX_ANSWER_BYTES or the request's deadline."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: float) -> None:
        self.inner, self.deadline = inner, deadline

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self.inner:
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise TrackerError(
                    _("The tracker's answer was larger than %(mib)d MiB.", mib=MAX_ANSWER_BYTES // 2**20)
                )
            if time.monotonic() > self.deadline:
                raise TrackerError(
                    _("The tracker took longer than %(s)d seconds to answer.", s=TOTAL_SECONDS)
                )
            yield chunk

    def close(self) -> None:
        self.inner.close()


class GuardedTransport(httpx.BaseTransport):
    """Sends a request only to an allowed host, at the address it checked; see the module's doc."""

    def __init__(self, policy: Policy, inner: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpx.HTTPTransport(retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Check the host and its address, send, and cap the answer."""
        deadline = time.monotonic() + TOTAL_SECONDS
        url = request.url
        scheme, host = url.scheme, url.host
        port = url.port or DEFAULT_PORTS.get(scheme, 0)
        if scheme not in DEFAULT_PORTS:
            raise TrackerError(_("A tracker's address starts with https:// or http://."))
        if not self.policy.allows(host, port):
            raise TrackerError(
                _(
                    "This server may not reach %(host)s: its operator allows only the trackers listed in "
                    "TRACKER_ALLOWED_HOSTS.",
                    host=f"{host}:{port}" if url.port else host,
                )
            )
        addresses = resolve(host, port)
        if not self.policy.allow_private and (not addresses or any(map(forbidden_address, addresses))):
            raise TrackerError(
                _(
                    "%(host)s leads to an address inside a private network, which this server may not "
                    "reach (its operator can allow that with TRACKER_ALLOW_PRIVATE).",
                    host=host,
                )
            )
        if not addresses:
            raise TrackerError(_("The tracker's address %(host)s could not be found.", host=host))
        address = addresses[0]
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(address)),
            headers=request.headers,  # Host: the tracker's name, as httpx set it
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": url.raw_host.decode("ascii")},
        )
        response = self.inner.handle_request(pinned)
        if response.is_redirect or 300 <= response.status_code < 400:
            response.close()
            raise TrackerError(
                _(
                    "The tracker redirected elsewhere (%(status)s): give its address exactly as the "
                    "tracker's own pages show it.",
                    status=response.status_code,
                )
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise TrackerError(_("The tracker sent a compressed answer although it was asked not to."))
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
            response.close()
            raise TrackerError(
                _("The tracker's answer was larger than %(mib)d MiB.", mib=MAX_ANSWER_BYTES // 2**20)
            )
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=CappedStream(response.stream, deadline),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


def tracker_client(policy: Policy | None = None, inner: httpx.BaseTransport | None = None) -> httpx.Client:
    """The client every connector is given (close it when done: `with tracker_client() as client`)."""
    return httpx.Client(
        transport=GuardedTransport(policy or current_policy(), inner),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: the check above is the one that counts
        timeout=httpx.Timeout(TOTAL_SECONDS, connect=CONNECT_SECONDS),
        headers={"Accept-Encoding": "identity", "User-Agent": "Estimator"},
    )

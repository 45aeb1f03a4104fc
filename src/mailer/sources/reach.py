"""Ingest, where a fetch may connect. The URL an editor gives is fetched as given, even
on the editor's own machine (a local test server). But the addresses a fetch meets on
the way - a redirect, a feed entry's page read for --full-text - are the site's to
choose, and a hostile or hacked site could point mailer at the newsroom's own network
or at the cloud's metadata service (169.254.169.254, which hands out credentials) and
have the answer mailed to every subscriber. So: once the URL given is on a public
address, every connection the fetch makes must go to public addresses too, the
connections to that same host included, unless [sources] allow_private_addresses says
the newsroom fetches from its intranet.

The check happens when each connection is opened, on the very addresses it then
connects to (see `GuardedBackend`), so a name that resolves to a public address for a
check and to a private one a moment later (DNS rebinding) gains nothing: not a feed's
host that answers 127.0.0.1 when its entry pages are read, nor a redirect to itself.
A URL on a non-public address (a local test feed) goes unchecked, and so does all it
leads to, only while its name stays non-public for the whole fetch."""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from mailer.errors import SourceError

# A host name -> its addresses. DNS; tests give their own (CONVENTIONS: mock only DNS).
Resolver = Callable[[str], list[str]]

METADATA = ipaddress.ip_address("169.254.169.254")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str) -> list[str]:
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"{host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in found))


def is_public(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, private (10/8,
    172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), shared
    (100.64/10), 0.0.0.0/8, unspecified, multicast or reserved, and not one of those
    wrapped in IPv6 (IPv4-mapped ::ffff:a.b.c.d, 6to4, NAT64)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return is_public(str(inner))
        if ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def kind_of(address: str) -> str:
    """What a non-public address is, for the editor."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip == METADATA:
        return "the cloud metadata address"
    for name in ("loopback", "link_local", "multicast", "unspecified", "private"):
        if getattr(ip, f"is_{name}"):
            return f"a {name.replace('_', '-')} address"
    return "not a public address"


class NonPublicAddress(SourceError):
    """A fetch that started on a public address was led to a non-public one."""

    def __init__(self, host: str, address: str):
        shown = host if host == address else f"{host} ({address})"
        self.address_told = f"{shown} is {kind_of(address)}"
        super().__init__(
            f"refused to connect to {shown}, {kind_of(address)}: a public site may not "
            "lead mailer into a private network (set [sources] allow_private_addresses = "
            "true if the newsroom fetches from its own network)"
        )


class ShiftedName(NonPublicAddress):
    """The editor's host was off the public internet as the fetch began and now names
    only public addresses: a hostile name that let the fetch run unchecked."""

    def __init__(self, host: str):
        SourceError.__init__(
            self,
            f"refused to connect to {host}: it was on a non-public address when the fetch "
            "began and now resolves only to public ones (a name that changes under a fetch "
            "could lead mailer into a private network); try again",
        )


@dataclass(frozen=True)
class Reach:
    """Where one fetch (and the entry pages it leads to) may connect."""

    origin: str | None  # the host of the URL the editor gave (it gets no pass of its own)
    private_ok: bool  # may any connection, to the origin too, go to a non-public address
    resolve: Resolver = system_resolver
    local_origin: bool = False  # the origin was off the public internet as the fetch began

    @classmethod
    def of(
        cls, url: str | None, allow_private: bool = False, resolve: Resolver = system_resolver
    ) -> Reach:
        """The reach of a fetch the editor asked for: of `url`, or of a file (None),
        whose links are treated as a public site's. The editor's host decides once, as
        the fetch starts: off the public internet (a local test feed), anything goes;
        public, and every connection is checked, to that host as well, since its name
        may answer differently a moment later."""
        host = urlsplit(url).hostname if url else None
        local = host is not None and _non_public(host, resolve)
        # with the newsroom's network allowed, a local name turning public risks nothing
        return cls(host, allow_private or local, resolve, local and not allow_private)

    def addresses(self, host: str) -> list[str]:
        """The addresses to connect to for `host`, each checked. Raises NonPublicAddress."""
        try:
            found = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            found = self.resolve(host)
        if self.local_origin and host == self.origin:
            # a local host goes unchecked only while it stays local: else its name could
            # answer 127.0.0.1 as the fetch begins and a hostile site's address after
            found = [address for address in found if not is_public(address)]
            if not found:
                raise ShiftedName(host)
        if not self.private_ok:
            for address in found:
                if not is_public(address):
                    raise NonPublicAddress(host, address)
        return found


def _non_public(host: str, resolve: Resolver) -> bool:
    """Whether the editor's own host is off the public internet (a name that does not
    resolve is taken as public: its fetch fails anyway)."""
    try:
        return not all(is_public(a) for a in Reach(None, True, resolve).addresses(host))
    except httpcore.ConnectError:
        return False


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's own network backend, but it resolves the host itself, checks every
    address, and connects to a checked address rather than the name. TLS still verifies
    the certificate for the name: httpcore passes the URL's host as server_hostname."""

    def __init__(self, reach: Reach):
        self.reach = reach
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self.reach.addresses(host):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the name's next address, as a browser does
        raise failure or httpcore.ConnectError(f"{host}: no address")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("mailer fetches over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over the `GuardedBackend`. httpx takes no network backend of
    its own, so the connection pool it builds is replaced by the same pool over ours
    (and no proxy from the environment is used: it would connect for us, unchecked)."""

    def __init__(self, reach: Reach, context: ssl.SSLContext | None = None):
        context = context or _ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, network_backend=GuardedBackend(reach)
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default context (certifi's roots), made once: loading them takes a while,
    and a feed read --full-text fetches once per entry."""
    return httpx.create_ssl_context()


def desk_reach(url: str, allow_private: bool, resolve: Resolver = system_resolver) -> Reach:
    """The reach of a fetch asked for at the desk. The desk's server does the fetching,
    not the editor's machine, so a URL typed into a browser must not make it read the
    server itself or the newsroom's network: the URL's own host is refused when it is
    not public (and checked again at each connection), unless [sources]
    allow_private_addresses. Raises SourceError."""
    host = urlsplit(url).hostname
    if not host:
        raise SourceError(f"{url} has no host name: give the address as https://site/path")
    reach = Reach(host, allow_private, resolve)
    if not allow_private:
        try:
            reach.addresses(host)
        except NonPublicAddress as refused:
            raise SourceError(
                f"{url}: {refused.address_told}. The desk does not fetch from this server "
                "or the newsroom's own network; an admin can allow it with [sources] "
                "allow_private_addresses = true"
            ) from None
        except httpcore.ConnectError:
            raise SourceError(f"{url}: no such site ({host} is not found)") from None
    return reach

"""What the subscriber site checks before a request may change anything: that a form
came from a page allowed to post it (its origin), who the client is (the peer, or what a
trusted proxy says), and how often a client and an address may ask for mail."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable

from starlette.requests import Request

from mailer.settings import web_origin

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What a browser's <form> sends; a cross-site `text/plain` post (which a form can also
# make, without a preflight) is refused, so is anything else.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def form_from_allowed_origin(
    request: Request, allowed: Iterable[str], token_page: bool = False
) -> bool:
    """A form post the site takes: a form's content type, and the page it came from
    (Origin, else Referer) one of the `allowed` origins. A post with neither header comes
    from a non-browser client (browsers send Origin with every cross-site POST), which a
    forged page cannot be, so it passes. A `token_page`'s form (its address carries a
    signed token) is sent with `Origin: null` under the page's no-referrer policy; a
    forged page cannot know the token, so null passes there."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        return False
    origin = request.headers.get("origin")
    if token_page and origin == "null":
        return True
    if origin is None and "referer" in request.headers:
        origin = _origin_or_none(request.headers["referer"])
        if origin is None:
            return False  # a Referer that names no http(s) page
    if origin is None:
        return True
    return _origin_or_none(origin) in set(allowed)  # "null" (a sandbox, a redirect): no


def _origin_or_none(url: str) -> str | None:
    try:
        return web_origin(url)
    except ValueError:
        return None


def proxy_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def client_address(request: Request, proxies: tuple[IPNetwork, ...]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy (the left part
    of the header is whatever the client chose to send, and is never believed)."""
    peer = _unmapped(request.client.host) if request.client else "unknown"
    if not proxies or not _within(peer, proxies):
        return peer
    hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    client = peer
    for hop in reversed([hop.strip() for hop in hops if hop.strip()]):
        address = _address(hop)
        if address is None:
            break  # a trusted proxy wrote something unreadable: stop at the last known hop
        client = str(address)
        if not _within(client, proxies):
            break
    return client


def _address(hop: str) -> IPAddress | None:
    """An X-Forwarded-For entry's address; some proxies add a port ("1.2.3.4:56",
    "[2001:db8::1]:56")."""
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _unmapped(host: str) -> str:
    """An IPv4 peer as a dual-stack socket reports it ("::ffff:10.0.0.1") in its own
    form, so IPv4 networks in trusted_proxies match it."""
    address = _address(host)
    return str(address) if address is not None else host


def _within(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class RateLimit:
    """At most `limit` requests for one key (a client, an address) in any
    `seconds`-long window. In memory, per process: `mailer serve` runs one."""

    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        self.seen: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()  # async routes and threadpool routes share it
        self.sweep_above = SWEEP_ABOVE

    def allow(self, key: str) -> bool:
        with self.lock:
            now = time.monotonic()
            if len(self.seen) > self.sweep_above:
                self._sweep(now)
            times = self.seen[key]
            while times and times[0] <= now - self.seconds:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True

    def _sweep(self, now: float) -> None:
        """Forget keys with nothing left in the window, so a flood of distinct keys
        does not grow memory without end."""
        start = now - self.seconds
        for key in [key for key, times in self.seen.items() if not times or times[-1] <= start]:
            del self.seen[key]
        # swept again only once the keys double: a flood costs O(1) a request on average
        self.sweep_above = max(SWEEP_ABOVE, 2 * len(self.seen))


class ClientLimit(RateLimit):
    """A RateLimit per client, where an IPv6 client is its /64: one subscriber line
    gets a whole /64, and a limit per address would let it take 2**64 turns."""

    def allow(self, key: str) -> bool:
        try:
            address = ipaddress.ip_address(key)
        except ValueError:
            return super().allow(key)
        if address.version == 6:
            key = str(ipaddress.ip_network(f"{address}/64", strict=False))
        return super().allow(key)


SWEEP_ABOVE = 10_000  # keys held before the limiter forgets the stale ones

# Confirmation emails one mailbox may be sent, however its address is spelled: enough
# for a reader who mistyped or lost the first, too few to flood anyone's inbox.
MAILS_PER_ADDRESS = 3
ADDRESS_WINDOW = 3600.0  # seconds

# Providers that deliver `v.i.c.t.i.m@` to `victim@`, and their other names.
DOTS_IGNORED = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def canonical_mailbox(address: str) -> str:
    """The mailbox an address reaches: lower case, without a `+tag`, and without dots
    in the local part at providers that ignore them."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.partition("+")[0]
    if domain in DOTS_IGNORED:
        local, domain = local.replace(".", ""), DOTS_IGNORED[domain]
    return f"{local}@{domain}"


class AddressLimit:
    """How many confirmation emails one mailbox gets (`victim+1@`, `victim+2@`, ... are
    one mailbox). The site asks before sending; a refusal sends nothing and the page
    answers as if it had, so the limit tells nobody anything about the address."""

    def __init__(self, limit: int = MAILS_PER_ADDRESS, seconds: float = ADDRESS_WINDOW):
        self.limiter = RateLimit(limit, seconds)

    def allow_address(self, address: str) -> bool:
        return self.limiter.allow(canonical_mailbox(address))

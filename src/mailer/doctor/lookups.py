"""DNS look-ups for `mailer doctor`, all through dnspython: the system's resolver or a
server the operator names (a zone checked before it is published, or the tests' own),
with a short time-out, and a failure told in words: the name does not exist, it has no
such record, or DNS did not answer."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from mailer.errors import MailerError

DNS_TIMEOUT = 3.0  # seconds for one look-up, retries included: doctor waits on many


class FailureKind(StrEnum):
    NO_SUCH_NAME = "nxdomain"
    NO_RECORD = "no answer"
    UNANSWERED = "failed"


class DnsFailure(Exception):
    """A look-up that gave no record, and why, in words a person reads."""

    def __init__(self, name: str, rdtype: str, why: str, kind: FailureKind):
        super().__init__(why)
        self.name, self.rdtype, self.why, self.kind = name, rdtype, why, kind

    @property
    def missing(self) -> bool:
        """The record is absent (the name or its records), not merely out of reach."""
        return self.kind != FailureKind.UNANSWERED


def dns_server(value: str) -> tuple[str, int]:
    """HOST[:PORT] (an IPv6 address in brackets when a port follows) as (address, port);
    a host name is resolved once by the system, since a resolver is asked by address."""
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
    elif value.count(":") == 1:
        host, _, number = value.partition(":")
        if not number.isdigit():
            raise MailerError(f"--dns-server {value}: expected HOST or HOST:PORT")
        port = int(number)
    if not 0 < port < 65536:
        raise MailerError(f"--dns-server {value}: the port must be 1-65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0])
        except OSError as exc:
            raise MailerError(f"--dns-server {value}: cannot find that host: {exc}") from None
    return host, port


@dataclass
class Dns:
    """Asks one resolver: the system's (server None) or the one at server (address, port)."""

    server: tuple[str, int] | None = None
    timeout: float = DNS_TIMEOUT

    def __post_init__(self) -> None:
        if self.server is None:
            self._resolver = dns.resolver.Resolver()
        else:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [self.server[0]]
            self._resolver.port = self.server[1]
        self._resolver.lifetime = self.timeout
        self._resolver.timeout = min(self.timeout, 2.0)
        # SPF, DMARC and the relay ask for some names twice: once is enough
        self._known: dict[tuple[str, str], list[str] | DnsFailure] = {}

    @property
    def described(self) -> str:
        if self.server is None:
            return "the system's DNS resolver"
        return f"the DNS server at {self.server[0]}:{self.server[1]}"

    def records(self, name: str, rdtype: str) -> list[str]:
        """The records of one type as text (a TXT record's strings joined, as SPF, DKIM
        and DMARC read them); DnsFailure when there are none or DNS fails."""
        key = (name.lower().rstrip("."), rdtype)
        if key not in self._known:
            try:
                self._known[key] = self._look_up(name, rdtype)
            except DnsFailure as failure:
                self._known[key] = failure
        known = self._known[key]
        if isinstance(known, DnsFailure):
            raise known
        return known

    def _look_up(self, name: str, rdtype: str) -> list[str]:
        try:
            answer = self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise DnsFailure(
                name, rdtype, f"{name} does not exist in DNS", FailureKind.NO_SUCH_NAME
            ) from None
        except dns.resolver.NoAnswer:
            raise DnsFailure(
                name, rdtype, f"{name} has no {rdtype} record", FailureKind.NO_RECORD
            ) from None
        except dns.exception.Timeout:
            why = f"{self.described} did not answer about {name} within {self.timeout:g} s"
            raise DnsFailure(name, rdtype, why, FailureKind.UNANSWERED) from None
        except dns.resolver.NoNameservers:
            why = f"{self.described} failed to look up {name} (SERVFAIL or refused)"
            raise DnsFailure(name, rdtype, why, FailureKind.UNANSWERED) from None
        except (dns.exception.DNSException, ValueError) as exc:
            why = f"cannot look up {rdtype} {name}: {exc}"
            raise DnsFailure(name, rdtype, why, FailureKind.UNANSWERED) from None
        if answer.rdtype == dns.rdatatype.TXT:
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        return [r.to_text() for r in answer]

    def txt(self, name: str) -> list[str]:
        """The TXT records at name; an empty list when there are none (DNS failures raise)."""
        try:
            return self.records(name, "TXT")
        except DnsFailure as failure:
            if failure.missing:
                return []
            raise

    def exists(self, name: str) -> bool:
        """Whether the name is in DNS at all (asked after a TXT look-up came back empty,
        so the answer is already known): NXDOMAIN is the only no."""
        try:
            self.records(name, "TXT")
        except DnsFailure as failure:
            return failure.kind != FailureKind.NO_SUCH_NAME
        return True

    def addresses(self, name: str) -> list[str]:
        """The A and AAAA addresses of name; DnsFailure when it has neither."""
        found: list[str] = []
        failures: list[DnsFailure] = []
        for rdtype in ("A", "AAAA"):
            try:
                found += self.records(name, rdtype)
            except DnsFailure as failure:
                failures.append(failure)
        if found:
            return found
        if any(not failure.missing for failure in failures):
            raise next(failure for failure in failures if not failure.missing)
        if failures[0].kind == FailureKind.NO_SUCH_NAME:
            raise failures[0]
        why = f"{name} has no address (A or AAAA) record"
        raise DnsFailure(name, "A", why, FailureKind.NO_RECORD)

    def mx(self, name: str) -> list[tuple[int, str]]:
        """The MX records of name, (preference, host) by preference; [] when it has none."""
        try:
            found = self.records(name, "MX")
        except DnsFailure as failure:
            if failure.kind == FailureKind.NO_RECORD:
                return []
            raise
        pairs = [(int(p), host) for p, host in (record.split(None, 1) for record in found)]
        return sorted(pairs)


def organisational(domain: str) -> str:
    """The organisational domain, taken as the last two labels: right for .org or .no,
    wrong for a public suffix of two labels (.co.uk), where DMARC would look one higher.
    No public-suffix list ships here, and a newsroom's domain is mostly of the first kind."""
    labels = dns.name.from_text(domain).relativize(dns.name.root).to_text().lower().split(".")
    return ".".join(labels[-2:])

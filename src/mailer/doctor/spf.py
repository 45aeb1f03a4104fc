"""SPF for `mailer doctor`: would the envelope domain's record let the relay's address
send (RFC 7208's check_host)? The mechanisms a newsroom's record uses are evaluated
with dnspython: ip4, ip6, a, mx, include, exists, redirect and all, with their
qualifiers and the limit of 10 look-ups. Macros (%{...}) and ptr are not: a record that
needs them is reported as not evaluated rather than guessed at.

Written here rather than taken from pyspf: pyspf resolves through module-level globals,
so it cannot be pointed at the DNS server doctor was given without patching them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from mailer.doctor.lookups import Dns, DnsFailure

MAX_LOOKUPS = 10  # RFC 7208 4.6.4: more makes the record a permanent error
MAX_MX_HOSTS = 10  # 4.6.4 again: an mx mechanism looks at 10 of its hosts at most

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"
    NOT_EVALUATED = "not evaluated"  # macros or ptr: doctor cannot tell


QUALIFIERS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}


@dataclass(frozen=True)
class Verdict:
    """What a receiver would make of mail from one address: the result, and the term
    that decided it or what went wrong, in words."""

    result: SpfResult
    why: str


class _Stop(Exception):
    def __init__(self, result: SpfResult, why: str):
        super().__init__(why)
        self.verdict = Verdict(result, why)


def spf_records(dns: Dns, domain: str) -> list[str]:
    """The domain's SPF records (TXT starting with v=spf1); DnsFailure when DNS fails."""
    return [text for text in dns.txt(domain) if _is_spf(text)]


def _is_spf(text: str) -> bool:
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


def evaluate(dns: Dns, domain: str, address: str) -> Verdict:
    """check_host(address, domain): the result a receiver gets for mail from `address`
    whose envelope sender is at `domain`."""
    try:
        return _Evaluation(dns, ipaddress.ip_address(address)).check(domain)
    except _Stop as stop:
        return stop.verdict


class _Evaluation:
    def __init__(self, dns: Dns, address: Address):
        self.dns, self.address, self.lookups = dns, address, 0

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _Stop(
                SpfResult.PERMERROR,
                f"the record needs more than {MAX_LOOKUPS} DNS look-ups (include, a, mx, "
                "exists, redirect each count); receivers give up on it",
            )

    def check(self, domain: str) -> Verdict:
        try:
            records = spf_records(self.dns, domain)
        except DnsFailure as failure:
            raise _Stop(SpfResult.TEMPERROR, failure.why) from None
        if not records:
            return Verdict(SpfResult.NONE, f"{domain} has no SPF record")
        if len(records) > 1:
            raise _Stop(SpfResult.PERMERROR, f"{domain} has {len(records)} SPF records")
        redirect = ""
        for term in records[0].split()[1:]:
            name, equals, value = term.partition("=")
            if equals and ":" not in name and "/" not in name:
                if name.lower() == "redirect":
                    redirect = value
                continue  # exp= and unknown modifiers change no result
            qualifier = QUALIFIERS.get(term[0])
            mechanism = term[1:] if qualifier else term
            if self.matches(mechanism, domain):
                result = qualifier or SpfResult.PASS
                return Verdict(result, f"{term} in the record of {domain}")
        if redirect:
            self.count_lookup()
            verdict = self.check(self.target(redirect))
            if verdict.result == SpfResult.NONE:
                raise _Stop(SpfResult.PERMERROR, f"redirect={redirect} leads to no SPF record")
            return verdict
        return Verdict(SpfResult.NEUTRAL, f"nothing in the record of {domain} matches")

    def target(self, value: str) -> str:
        if "%" in value:
            raise _Stop(SpfResult.NOT_EVALUATED, f"{value} uses SPF macros, which doctor skips")
        return value.rstrip(".")

    def matches(self, mechanism: str, domain: str) -> bool:
        kind, _, argument = mechanism.partition(":")
        kind = kind.lower()
        if "/" in kind:  # a/24 or mx//64: a prefix without a domain
            kind, slash, cidr = kind.partition("/")
            argument = slash + cidr
        if kind == "all":
            return True
        if kind in ("ip4", "ip6"):
            return self.in_network(argument)
        if kind == "include":
            return self.include(self.target(argument))
        if kind in ("a", "mx", "exists", "ptr"):
            self.count_lookup()
            name, prefix = _name_and_prefix(argument, domain, self.address.version)
            if kind == "ptr":
                raise _Stop(SpfResult.NOT_EVALUATED, "ptr (RFC 7208 says not to use it)")
            return self.by_name(kind, self.target(name), prefix)
        raise _Stop(SpfResult.PERMERROR, f"{mechanism!r} is not an SPF mechanism")

    def in_network(self, argument: str) -> bool:
        try:
            network = ipaddress.ip_network(argument, strict=False)
        except ValueError:
            raise _Stop(SpfResult.PERMERROR, f"{argument!r} is not a network") from None
        return network.version == self.address.version and self.address in network

    def include(self, domain: str) -> bool:
        self.count_lookup()
        verdict = self.check(domain)
        if verdict.result in (SpfResult.NONE, SpfResult.PERMERROR):
            raise _Stop(SpfResult.PERMERROR, f"include:{domain}: {verdict.why}")
        if verdict.result in (SpfResult.TEMPERROR, SpfResult.NOT_EVALUATED):
            raise _Stop(verdict.result, verdict.why)
        return verdict.result == SpfResult.PASS

    def by_name(self, kind: str, name: str, prefix: int) -> bool:
        rdtype = "A" if self.address.version == 4 else "AAAA"
        try:
            if kind == "exists":
                return bool(self.dns.records(name, "A"))
            hosts = [name] if kind == "a" else [h for _, h in self.dns.mx(name)][:MAX_MX_HOSTS]
            found = []
            for host in hosts:
                found += self.dns.records(host.rstrip("."), rdtype) if host != "." else []
        except DnsFailure as failure:
            if failure.missing:  # a void look-up: no match
                return False
            raise _Stop(SpfResult.TEMPERROR, failure.why) from None
        networks = (ipaddress.ip_network(f"{ip}/{prefix}", strict=False) for ip in found)
        return any(self.address in network for network in networks)


def _name_and_prefix(argument: str, domain: str, version: int) -> tuple[str, int]:
    """a:NAME/24//64 -> (NAME, the prefix for the address's version); NAME defaults to
    the domain being checked."""
    name, _, prefixes = argument.partition("/")
    four, _, six = ("/" + prefixes).partition("//") if prefixes else ("", "", "")
    chosen = (four.lstrip("/") if version == 4 else six) or ("32" if version == 4 else "128")
    if not chosen.isdigit() or int(chosen) > (32 if version == 4 else 128):
        raise _Stop(SpfResult.PERMERROR, f"{argument!r}: a prefix length is a number")
    return name or domain, int(chosen)

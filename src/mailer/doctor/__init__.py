"""`mailer doctor`: is the From domain ready to send a newsletter? SPF lets the relay
send, the published DKIM key is ours, a DMARC record is there and a check that passes
lines up with the From domain, bounces can arrive, and the relay offers TLS.

A pipeline stage of its own: it reads the settings and DNS, touches no database, and
returns findings (findings.py) for the command line to print."""

from __future__ import annotations

import ipaddress
import socket
import ssl

from mailer.doctor.findings import Diagnosis, Finding, Level, Topic, problem
from mailer.doctor.lookups import DNS_TIMEOUT, Dns, DnsFailure, dns_server
from mailer.doctor.records import bounce_check, dkim_check, dmarc_check, spf_check
from mailer.doctor.relay import relay_check
from mailer.settings import Settings

__all__ = ["Diagnosis", "Finding", "Level", "Topic", "diagnose", "dns_server"]


def diagnose(
    settings: Settings,
    server: tuple[str, int] | None = None,
    tls: ssl.SSLContext | None = None,
    dns_timeout: float = DNS_TIMEOUT,
) -> Diagnosis:
    """Check the From domain, asking the DNS server at `server` (None: the system's) and
    trusting the certificates `tls` trusts (None: the system's, as the sender does)."""
    dns = Dns(server, dns_timeout)
    from_domain = settings.publication.from_address.rpartition("@")[2].lower()
    bounces = settings.bounces.address
    if bounces:
        envelope = bounces.rpartition("@")[2].lower()
        why = f"the domain of the envelope sender (Return-Path): [bounces] address {bounces}"
    else:
        envelope = from_domain
        why = "the From domain: with no [bounces] address, from_address is the envelope sender"
    relay = settings.smtp.host
    local = on_this_machine(relay)
    addresses, unfound = ([relay], None) if local else _relay_addresses(dns, relay)
    spf, spf_passes = spf_check(dns, envelope, relay, None if local else addresses)
    dkim, dkim_passes = dkim_check(dns, settings.dkim)
    passes = {Topic.SPF: spf_passes, Topic.DKIM: dkim_passes}
    found = spf + dkim + dmarc_check(dns, from_domain, settings.dkim, envelope, passes)
    found += bounce_check(dns, bounces, settings.publication.from_address)
    if unfound:
        found.append(unfound)
    else:
        tls = tls or ssl.create_default_context()
        found += relay_check(settings.smtp, addresses[0], local, tls)
    return Diagnosis(from_domain, envelope, why, dns.described, tuple(found))


def on_this_machine(host: str) -> bool:
    """A relay on this machine or its private network (the local Postfix, the demo's):
    the address mail finally leaves from is not its own."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def _relay_addresses(dns: Dns, relay: str) -> tuple[list[str], Finding | None]:
    """The relay's addresses, looked up through `dns`, or through the system as the
    sender looks it up (/etc/hosts, say) when DNS has none and no server was named;
    none: the finding that says so."""
    try:
        ipaddress.ip_address(relay)
        return [relay], None
    except ValueError:
        pass
    try:
        return dns.addresses(relay), None
    except DnsFailure as failure:
        found = _system_addresses(relay) if dns.server is None else []
        if found:
            return found, None
        says = f"cannot find the address of the relay [smtp] host {relay}: {failure.why}."
        return [], problem(Topic.RELAY, says, "Check [smtp] host.")


def _system_addresses(host: str) -> list[str]:
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return list(dict.fromkeys(str(entry[4][0]) for entry in found))

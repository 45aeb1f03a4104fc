"""`mailer doctor`: is the From domain ready to send a newsletter? SPF lets the relay
send, the published DKIM key is ours, a DMARC record is there and a check that passes
lines up with the From domain, bounces can arrive, and the relay offers TLS.

A pipeline stage of its own: it reads the settings and DNS, touches no database, and
returns findings (findings.py) for the command line to print."""

from __future__ import annotations

import ipaddress
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
        why = f"the domain of [bounces] address ({bounces}), the envelope sender's"
    else:
        envelope = from_domain
        why = "the From domain: with no [bounces] address the envelope sender is from_address"
    relay = settings.smtp.host
    found: list[Finding] = []
    addresses = None if on_this_machine(relay) else _relay_addresses(dns, relay, found)
    spf, spf_passes = spf_check(dns, envelope, relay, addresses)
    dkim, dkim_passes = dkim_check(dns, settings.dkim)
    passes = {Topic.SPF: spf_passes, Topic.DKIM: dkim_passes}
    dmarc = dmarc_check(dns, from_domain, settings.dkim, envelope, passes)
    found += spf + dkim + dmarc
    found += bounce_check(dns, bounces, settings.publication.from_address)
    if addresses != []:  # [] when the relay's name has no address: reported already
        via = addresses[0] if addresses else relay
        found += relay_check(
            settings.smtp, via, addresses is None, tls or ssl.create_default_context()
        )
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


def _relay_addresses(dns: Dns, relay: str, found: list[Finding]) -> list[str]:
    """The relay's addresses, looked up through `dns`; [] with a finding when none."""
    try:
        ipaddress.ip_address(relay)
        return [relay]
    except ValueError:
        pass
    try:
        return dns.addresses(relay)
    except DnsFailure as failure:
        says = f"cannot find the address of the relay [smtp] host {relay}: {failure.why}."
        found.append(problem(Topic.RELAY, says, "Check [smtp] host."))
        return []

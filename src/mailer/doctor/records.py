"""The DNS records `mailer doctor` reads for the From domain: SPF (does it let the relay
send?), DKIM (is the published key ours?), DMARC (is there a policy, and does a check
that passes line up with the From domain?) and the bounce address's mail servers.

Each check returns its findings; SPF and DKIM also say whether they pass (None when
doctor cannot tell), which DMARC's alignment needs."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mailer.doctor.findings import Finding, Topic, note, ok, problem, warning
from mailer.doctor.lookups import Dns, DnsFailure, FailureKind, organisational
from mailer.doctor.spf import SpfResult, evaluate, spf_records
from mailer.sections import Dkim

GMAIL_YAHOO = "Gmail and Yahoo require it of bulk senders, newsletters included"


def spf_check(
    dns: Dns, domain: str, relay: str, addresses: list[str] | None
) -> tuple[list[Finding], bool | None]:
    """SPF at `domain` for the relay's `addresses` (None: a relay on this machine, whose
    sending address doctor cannot see)."""
    try:
        records = spf_records(dns, domain)
    except DnsFailure as failure:
        return [problem(Topic.SPF, f"cannot read the SPF record: {failure.why}.", _retry)], None
    if not records and not dns.exists(domain):
        says = f"{domain} does not exist in DNS, so mail from it is refused nearly everywhere."
        fix = "Check the spelling of the address in the settings, or register the domain."
        return [problem(Topic.SPF, says, fix)], False
    if not records:
        says = f"{domain} has no SPF record, so receivers cannot tell who may send its mail."
        example = f"ip4:{addresses[0]} " if addresses and ":" not in addresses[0] else ""
        fix = (
            f'Publish one TXT record at {domain}: "v=spf1 {example or "ip4:RELAY-ADDRESS "}-all", '
            "or the include: your mail provider tells you to use."
        )
        return [problem(Topic.SPF, says, fix)], False
    if len(records) > 1:
        says = f"{domain} has {len(records)} SPF records; receivers treat that as an error."
        fix = "Merge them into one TXT record starting with v=spf1: " + " | ".join(records)
        return [problem(Topic.SPF, says, fix)], False
    record = records[0]
    if addresses is None:
        says = (
            f"{domain} has an SPF record ({record}). The relay is {relay}, on this machine: "
            "it hands mail on from an address doctor cannot see, so whether the record "
            "allows that address was not checked."
        )
        fix = "Make sure the record allows the public address your mail server sends from."
        return [note(Topic.SPF, says, fix)], None
    if not addresses:
        says = f"whether {domain}'s SPF record allows the relay was not checked: see Relay."
        return [note(Topic.SPF, says)], None
    findings = []
    for address in addresses:
        verdict = evaluate(dns, domain, address)
        if verdict.result == SpfResult.PASS:
            continue
        findings.append(_not_allowed(domain, relay, address, record, verdict.result, verdict.why))
    if findings:
        return findings, False
    shown = ", ".join(addresses)
    return [ok(Topic.SPF, f"{domain} allows the relay {relay} ({shown}): {record}")], True


_retry = "Check the domain name; if DNS was only slow, run mailer doctor again."


def _not_allowed(
    domain: str, relay: str, address: str, record: str, result: SpfResult, why: str
) -> Finding:
    mechanism = "ip6" if ":" in address else "ip4"
    add = f"Add {mechanism}:{address} (or the include: your provider documents) before the all"
    meaning = {
        SpfResult.FAIL: "receivers may refuse its mail (fail)",
        SpfResult.SOFTFAIL: "receivers treat its mail as suspect (softfail)",
        SpfResult.NEUTRAL: "the record neither allows nor forbids it (neutral), which counts "
        "as no SPF pass",
    }.get(result)
    if meaning:
        says = (
            f"the SPF record of {domain} does not allow the relay {relay} ({address}): "
            f"{meaning}; decided by {why}."
        )
        return problem(Topic.SPF, says, f"{add}: {record}")
    if result == SpfResult.NOT_EVALUATED:
        says = f"doctor could not evaluate the SPF record of {domain} for {address}: {why}."
        return warning(Topic.SPF, says, "Check by hand that it allows the relay's address.")
    if result == SpfResult.TEMPERROR:
        return problem(Topic.SPF, f"a DNS look-up for the SPF record failed: {why}.", _retry)
    says = f"the SPF record of {domain} is broken (permerror), so it allows nobody: {why}."
    return problem(Topic.SPF, says, f"Correct the record: {record}")


def dkim_check(dns: Dns, dkim: Dkim) -> tuple[list[Finding], bool]:
    if not dkim.enabled:
        says = f"messages go out without a DKIM signature; {GMAIL_YAHOO}."
        fix = (
            "Run `mailer dkim keygen --selector NAME`, publish the TXT record it prints, and "
            "set [dkim] domain, selector and private_key_path."
        )
        return [warning(Topic.DKIM, says, fix)], False
    name = f"{dkim.selector}._domainkey.{dkim.domain}"
    try:
        ours = _public_key(Path(dkim.private_key_path))
    except (OSError, ValueError, TypeError) as exc:
        says = f"cannot read the DKIM key {dkim.private_key_path}: {exc}."
        return [problem(Topic.DKIM, says, "Make a new one with `mailer dkim keygen`.")], False
    wanted = f"v=DKIM1; k=rsa; p={base64.b64encode(ours).decode()}"
    publish = f'Publish this TXT record at {name}: "{wanted}"'
    try:
        keys = [t for t in dns.txt(name) if "p" in _tags(t)]
    except DnsFailure as failure:
        return [problem(Topic.DKIM, f"cannot read the DKIM key: {failure.why}.", _retry)], False
    if not keys:
        says = f"no DKIM key is published at {name}, so receivers cannot check the signature."
        return [problem(Topic.DKIM, says, publish)], False
    published = _tags(keys[0])["p"]
    if not published:
        says = f"the DKIM key at {name} is revoked (empty p=)."
        return [problem(Topic.DKIM, says, publish)], False
    try:
        matches = base64.b64decode("".join(published.split()), validate=True) == ours
    except (binascii.Error, ValueError):
        matches = False
    if not matches:
        says = (
            f"the key published at {name} is not the public half of [dkim] private_key_path "
            f"({dkim.private_key_path}): receivers will find every signature broken."
        )
        fix = f"{publish} (or point private_key_path at the key the record was made for)."
        return [problem(Topic.DKIM, says, fix)], False
    says = f"the key published at {name} matches {dkim.private_key_path} (d={dkim.domain})."
    return [ok(Topic.DKIM, says)], True


def _public_key(path: Path) -> bytes:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tags(record: str) -> dict[str, str]:
    """A DKIM or DMARC record's tag=value list, names lower-cased."""
    tags = {}
    for part in record.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            tags[name.strip().lower()] = value.strip()
    return tags


POLICIES = {
    "none": "receivers only report mail that fails; a fine start, and enough for Gmail and Yahoo",
    "quarantine": "mail that fails goes to spam",
    "reject": "mail that fails is refused",
}


def dmarc_check(
    dns: Dns,
    from_domain: str,
    dkim: Dkim,
    envelope_domain: str,
    passes: dict[Topic, bool | None],
) -> list[Finding]:
    """The DMARC record of the From domain (or of its organisational domain), its policy,
    and whether a check that passes is aligned with the From domain."""
    where, records = f"_dmarc.{from_domain}", []
    try:
        records = _dmarc_records(dns, where)
        org = organisational(from_domain)
        if not records and org != from_domain:
            where, records = f"_dmarc.{org}", _dmarc_records(dns, f"_dmarc.{org}")
    except DnsFailure as failure:
        return [problem(Topic.DMARC, f"cannot read the DMARC record: {failure.why}.", _retry)]
    if not records:
        says = f"{from_domain} has no DMARC record; {GMAIL_YAHOO}."
        fix = (
            f'Publish a TXT record at _dmarc.{from_domain}: "v=DMARC1; p=none; '
            f'rua=mailto:dmarc@{from_domain}", and move to p=quarantine once the reports '
            "show your mail passes."
        )
        return [problem(Topic.DMARC, says, fix)]
    if len(records) > 1:
        says = f"{where} has {len(records)} DMARC records; receivers ignore them all."
        return [problem(Topic.DMARC, says, "Keep one: " + " | ".join(records))]
    tags = _tags(records[0])
    policy = tags.get("sp" if where != f"_dmarc.{from_domain}" else "p", tags.get("p", ""))
    if policy.lower() not in POLICIES:
        says = f"the DMARC record at {where} has no valid policy (p=none, quarantine or reject)."
        return [problem(Topic.DMARC, says, f"Correct it: {records[0]}")]
    found = [ok(Topic.DMARC, f"{where}: p={policy.lower()} ({POLICIES[policy.lower()]}).")]
    strict = {Topic.DKIM: tags.get("adkim", "r") == "s", Topic.SPF: tags.get("aspf", "r") == "s"}
    signer = dkim.domain if dkim.enabled else ""
    return found + _alignment(from_domain, signer, envelope_domain, strict, passes)


def _dmarc_records(dns: Dns, name: str) -> list[str]:
    return [t for t in dns.txt(name) if t.replace(" ", "").lower().startswith("v=dmarc1")]


def aligned(domain: str, from_domain: str, strict: bool) -> bool:
    """DMARC alignment: the same domain (strict), or the same organisational domain."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if strict:
        return domain == from_domain
    return bool(domain) and organisational(domain) == organisational(from_domain)


def _alignment(
    from_domain: str,
    signer: str,
    envelope_domain: str,
    strict: dict[Topic, bool],
    passes: dict[Topic, bool | None],
) -> list[Finding]:
    lined_up = {
        Topic.DKIM: bool(signer) and aligned(signer, from_domain, strict[Topic.DKIM]),
        Topic.SPF: aligned(envelope_domain, from_domain, strict[Topic.SPF]),
    }
    what = {Topic.DKIM: f"DKIM (d={signer or 'none'})", Topic.SPF: f"SPF ({envelope_domain})"}
    passing = [t for t in (Topic.DKIM, Topic.SPF) if lined_up[t] and passes[t]]
    unsure = [t for t in (Topic.DKIM, Topic.SPF) if lined_up[t] and passes[t] is None]
    fix = (
        f"Sign with [dkim] domain = {from_domain} (or a domain under "
        f"{organisational(from_domain)}), with its key published there."
    )
    if passing:
        verb = "passes" if len(passing) == 1 else "pass"
        says = f"{' and '.join(what[t] for t in passing)} {verb} aligned with {from_domain}."
        found = [ok(Topic.DMARC, says)]
        if not lined_up[Topic.DKIM]:
            says = (
                f"{what[Topic.DKIM]} is not aligned with {from_domain}: DMARC rests on SPF "
                "alone, which fails when a reader's mail is forwarded."
            )
            found.append(warning(Topic.DMARC, says, fix))
        return found
    if unsure:
        says = (
            f"{' and '.join(what[t] for t in unsure)} would be aligned with {from_domain}, "
            "but whether it passes could not be checked here (see above)."
        )
        return [warning(Topic.DMARC, says, fix)]
    if not any(lined_up.values()):
        says = (
            f"neither {what[Topic.DKIM]} nor {what[Topic.SPF]} is aligned with the From domain "
            f"{from_domain}, so every message fails DMARC and its policy applies."
        )
        return [problem(Topic.DMARC, says, fix)]
    failing = " and ".join(what[t] for t in (Topic.DKIM, Topic.SPF) if lined_up[t])
    says = (
        f"no check aligned with {from_domain} passes ({failing}: see above), so every "
        "message fails DMARC."
    )
    return [problem(Topic.DMARC, says, "Fix the SPF or DKIM problem above.")]


def bounce_check(dns: Dns, address: str, from_address: str) -> list[Finding]:
    """Can bounces reach [bounces] address: does its domain take mail (MX, or A)?"""
    if not address:
        says = (
            f"[bounces] address is not set: bounces go to {from_address} and are matched by "
            "reading them."
        )
        fix = "Set [bounces] address (e.g. bounces@your domain) so each bounce names its reader."
        return [note(Topic.BOUNCES, says, fix)]
    domain = address.rpartition("@")[2]
    no_mail = f"Publish an MX record at {domain} pointing at the mail server that holds {address}."
    try:
        exchangers = dns.mx(domain)
        if exchangers == [(0, ".")]:
            says = f"{domain} says it takes no mail (a null MX), so bounces to {address} are lost."
            return [problem(Topic.BOUNCES, says, no_mail)]
        if exchangers:
            hosts = ", ".join(host.rstrip(".") for _, host in exchangers)
            return [ok(Topic.BOUNCES, f"bounces to {address} can arrive: {domain} has MX {hosts}.")]
        found = dns.addresses(domain)
    except DnsFailure as failure:
        if not failure.missing:
            return [problem(Topic.BOUNCES, f"cannot look up {domain}: {failure.why}.", _retry)]
        why = failure.why
        if failure.kind == FailureKind.NO_RECORD:
            why = f"{domain} has neither an MX nor an address record"
        says = f"{why}, so bounces sent to {address} cannot arrive."
        return [problem(Topic.BOUNCES, says, no_mail)]
    says = (
        f"{domain} has no MX record; bounces to {address} go to its address "
        f"({', '.join(found)}), as mail does without MX."
    )
    return [ok(Topic.BOUNCES, says)]

"""`mailer doctor` against a real DNS server on 127.0.0.1 (mailer.testing.dns) holding a
good zone and broken ones, and real SMTP relays on 127.0.0.1, one offering STARTTLS with
a certificate for the relay's name and one offering none. Each broken zone must give
its PROBLEM line in words a person can act on."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from mailer.catcher import free_port
from mailer.cli import app
from mailer.cli.doctor import print_diagnosis
from mailer.doctor import Diagnosis, Level, Topic, diagnose, dns_server
from mailer.doctor.lookups import Dns
from mailer.doctor.spf import SpfResult, evaluate
from mailer.signing import generate_key, txt_value
from mailer.testing import TEST_SECRET_KEY, RecordingHandler, make_settings, run_mailer
from mailer.testing import smtp_server as plain_smtp_server
from mailer.testing.certs import self_signed
from mailer.testing.dns import DnsServer
from mailer.testing.dns import dns_server as start_dns_server

RELAY = "relay.dawat.example"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Our DKIM key (path and published record) and another key's record."""
    directory = tmp_path_factory.mktemp("dkim")
    ours = generate_key(directory / "ours.pem", "s1", "dawat.example", bits=1024)
    other = generate_key(directory / "other.pem", "s1", "dawat.example", bits=1024)
    return {
        "path": str(directory / "ours.pem"),
        "ours": txt_value(ours).decode(),
        "other": txt_value(other).decode(),
    }


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the relay's name, and its key."""
    return self_signed(tmp_path_factory.mktemp("tls"), "relay", (RELAY,))


@pytest.fixture(scope="module")
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the relay's certificate, as a system would trust a
    provider's."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture(scope="module")
def tls_relay(certificate: tuple[Path, Path]) -> Iterator[int]:
    """An aiosmtpd relay on 127.0.0.1 offering STARTTLS; its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    controller = Controller(
        RecordingHandler(),
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        ready_timeout=30,
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def plain_relay() -> Iterator[int]:
    """A relay on 127.0.0.1 that offers no STARTTLS; its port."""
    with plain_smtp_server() as (_controller, handler):
        yield handler.port


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with start_dns_server() as running:
        yield running


def good_zone(keys: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return {
        "dawat.example": {
            "TXT": ["v=spf1 include:_spf.provider.example -all", "google-site-verification=x"],
            "MX": ["10 mx.dawat.example."],
        },
        "_spf.provider.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 a:relay.dawat.example ~all"]},
        RELAY: {"A": ["127.0.0.1"]},
        "s1._domainkey.dawat.example": {"TXT": [keys["ours"]]},
        "_dmarc.dawat.example": {"TXT": ["v=DMARC1; p=quarantine; rua=mailto:d@dawat.example"]},
        "mx.dawat.example": {"A": ["127.0.0.1"]},
    }


def settings_for(tmp_path: Path, keys: dict[str, Any], port: int, **sections: Any) -> Any:
    base: dict[str, dict[str, Any]] = {
        "publication": {"from_address": "news@dawat.example"},
        "smtp": {"host": RELAY, "security": "starttls"},
        "dkim": {"domain": "dawat.example", "selector": "s1", "private_key_path": keys["path"]},
        "bounces": {"address": "bounces@dawat.example"},
    }
    for name, values in sections.items():
        base[name] = {**base[name], **values}
    return make_settings(tmp_path, port, **base)


@pytest.fixture
def check(
    server: DnsServer,
    trusting: ssl.SSLContext,
    keys: dict[str, Any],
    tls_relay: int,
    tmp_path: Path,
) -> Any:
    """diagnose() on a zone (the good one, changed by `change`: None removes a name) and
    settings (the good ones, changed section by section)."""

    def run(
        change: dict[str, Any] | None = None,
        port: int = tls_relay,
        timeout: float = 2.0,  # a busy CI machine answers late; silence is checked with less
        **sections: Any,
    ) -> Any:
        zone: dict[str, Any] = good_zone(keys)
        for name, records in (change or {}).items():
            if records is None:
                zone.pop(name, None)
            else:
                zone[name] = records
        server.zone = zone
        settings = settings_for(tmp_path, keys, port, **sections)
        return diagnose(settings, ("127.0.0.1", server.port), trusting, dns_timeout=timeout)

    return run


def levels(found: Diagnosis, topic: Topic) -> list[Level]:
    return [finding.level for finding in found.about(topic)]


def problem_about(found: Diagnosis, topic: Topic) -> str:
    """The one PROBLEM line about `topic`, with its fix."""
    lines = [f"{f.says} Fix: {f.fix}" for f in found.problems if f.topic == topic]
    assert len(lines) == 1, found.findings
    return lines[0]


def test_a_ready_domain_is_all_ok(check: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """SPF lets the relay send (through an include), the DKIM key matches, DMARC is there
    and aligned, bounces have an MX, the relay offers STARTTLS: all OK."""
    found = check()
    assert [f.level for f in found.findings] == [Level.OK] * len(found.findings), found.findings
    assert [f.topic for f in found.findings] == [
        Topic.SPF, Topic.DKIM, Topic.DMARC, Topic.DMARC, Topic.BOUNCES, Topic.RELAY
    ]  # fmt: skip
    print_diagnosis(found)
    shown = capsys.readouterr().out
    assert (
        "OK       SPF      dawat.example allows the relay relay.dawat.example (127.0.0.1)" in shown
    )
    assert (
        "SPF is checked for dawat.example, the domain of the envelope sender (Return-Path): "
        "[bounces] address bounces@dawat.example."
    ) in shown
    assert "s1._domainkey.dawat.example matches" in shown
    assert "_dmarc.dawat.example: p=quarantine (mail that fails goes to spam)" in shown
    assert "DKIM (d=dawat.example) and SPF (dawat.example) pass aligned" in shown
    assert "dawat.example has MX mx.dawat.example" in shown
    assert "offers STARTTLS, with a valid certificate" in shown
    assert shown.rstrip().endswith("The domain is ready.")


def test_no_spf_record(check: Any) -> None:
    found = check({"dawat.example": {"TXT": ["google-site-verification=x"], "MX": ["10 mx."]}})
    line = problem_about(found, Topic.SPF)
    assert "dawat.example has no SPF record" in line
    assert 'Publish one TXT record at dawat.example: "v=spf1 ip4:127.0.0.1 -all"' in line


def test_two_spf_records(check: Any) -> None:
    records = ["v=spf1 ip4:127.0.0.1 -all", "v=spf1 include:_spf.provider.example ~all"]
    found = check({"dawat.example": {"TXT": records, "MX": ["10 mx.dawat.example."]}})
    line = problem_about(found, Topic.SPF)
    assert "dawat.example has 2 SPF records; receivers treat that as an error" in line
    assert "Merge them into one TXT record" in line


@pytest.mark.parametrize(
    ("ending", "meaning"),
    [
        ("-all", "receivers may refuse its mail (fail); decided by -all"),
        ("~all", "receivers treat its mail as suspect (softfail); decided by ~all"),
    ],
)
def test_spf_that_does_not_allow_the_relay(check: Any, ending: str, meaning: str) -> None:
    record = f"v=spf1 ip4:192.0.2.10 mx {ending}"
    found = check({"dawat.example": {"TXT": [record], "MX": ["10 mx.dawat.example."]},
                   "mx.dawat.example": {"A": ["192.0.2.25"]}})  # fmt: skip
    line = problem_about(found, Topic.SPF)
    assert "does not allow the relay relay.dawat.example (127.0.0.1)" in line
    assert meaning in line
    assert (
        f"Add ip4:127.0.0.1 (or the include: your provider documents) before the all: {record}"
        in line
    )
    # DKIM still passes aligned: DMARC holds, SPF alone is the problem
    assert levels(found, Topic.DMARC) == [Level.OK, Level.OK]


def test_dkim_key_that_is_not_ours(check: Any, keys: dict[str, Any]) -> None:
    found = check({"s1._domainkey.dawat.example": {"TXT": [keys["other"]]}})
    line = problem_about(found, Topic.DKIM)
    assert "the key published at s1._domainkey.dawat.example is not the public half" in line
    assert keys["path"] in line
    assert f'Publish this TXT record at s1._domainkey.dawat.example: "{keys["ours"]}"' in line
    # SPF still passes aligned, so DMARC passes: the DKIM line is the one problem
    assert len(found.problems) == 1
    assert found.about(Topic.DMARC)[1].says == (
        "SPF (dawat.example) passes aligned with dawat.example."
    )


def test_no_dkim_record_and_no_dkim_set(check: Any, keys: dict[str, Any]) -> None:
    missing = check({"s1._domainkey.dawat.example": None})
    assert "no DKIM key is published at s1._domainkey.dawat.example" in problem_about(
        missing, Topic.DKIM
    )
    unset = check(dkim={"domain": "", "selector": "", "private_key_path": ""})
    (finding,) = unset.about(Topic.DKIM)
    assert finding.level == Level.WARNING
    assert "messages go out without a DKIM signature" in finding.says
    assert "`mailer dkim keygen --selector NAME`" in finding.fix


def test_no_dmarc_record(check: Any) -> None:
    found = check({"_dmarc.dawat.example": None})
    line = problem_about(found, Topic.DMARC)
    assert "dawat.example has no DMARC record; Gmail and Yahoo require it" in line
    assert 'Publish a TXT record at _dmarc.dawat.example: "v=DMARC1; p=none;' in line


def test_dmarc_of_the_organisational_domain(check: Any) -> None:
    """From a subdomain, DMARC falls back to the organisational domain's record, and
    relaxed alignment accepts DKIM's d=dawat.example."""
    found = check(
        {"letters.dawat.example": {"TXT": ["v=spf1 a:relay.dawat.example -all"]}},
        publication={"from_address": "news@letters.dawat.example"},
        bounces={"address": ""},
    )
    assert found.problems == [], found.problems
    (policy, alignment) = found.about(Topic.DMARC)
    assert policy.says.startswith("_dmarc.dawat.example: p=quarantine")
    assert "pass aligned with letters.dawat.example" in alignment.says


def test_dmarc_misaligned(check: Any, keys: dict[str, Any]) -> None:
    """DKIM signs for another domain and bounces go to another domain: nothing that
    passes is aligned with the From domain."""
    found = check(
        {
            "s1._domainkey.mailhost.example": {"TXT": [keys["ours"]]},
            "mailhost.example": {"TXT": ["v=spf1 a:relay.dawat.example -all"], "A": ["192.0.2.7"]},
        },
        dkim={"domain": "mailhost.example"},
        bounces={"address": "bounces@mailhost.example"},
    )
    assert found.envelope_domain == "mailhost.example"
    line = problem_about(found, Topic.DMARC)
    assert (
        "neither DKIM (d=mailhost.example) nor SPF (mailhost.example) is aligned with the "
        "From domain dawat.example, so every message fails DMARC"
    ) in line
    assert "Sign with [dkim] domain = dawat.example" in line
    assert levels(found, Topic.SPF) == levels(found, Topic.DKIM) == [Level.OK]


def test_dkim_misaligned_is_a_warning_while_spf_is_aligned(
    check: Any, keys: dict[str, Any]
) -> None:
    found = check(
        {"s1._domainkey.mailhost.example": {"TXT": [keys["ours"]]}},
        dkim={"domain": "mailhost.example"},
    )
    assert found.problems == []
    (warning,) = found.warnings
    assert warning.topic == Topic.DMARC
    assert "DKIM (d=mailhost.example) is not aligned with dawat.example" in warning.says


@pytest.mark.parametrize(
    ("records", "said"),
    [
        (None, "bounces.dawat.example does not exist in DNS"),
        ({"TXT": ["v=spf1 -all"]}, "bounces.dawat.example has neither an MX nor an address"),
        ({"MX": ["0 ."]}, "says it takes no mail (a null MX)"),
    ],
)
def test_bounce_domain_that_takes_no_mail(check: Any, records: Any, said: str) -> None:
    found = check(
        {"bounces.dawat.example": records}, bounces={"address": "box@bounces.dawat.example"}
    )
    line = problem_about(found, Topic.BOUNCES)
    assert said in line
    assert "Publish an MX record at bounces.dawat.example" in line


def test_bounce_domain_with_an_address_and_no_mx(check: Any) -> None:
    found = check(
        {
            "bounces.dawat.example": {
                "A": ["192.0.2.9"],
                "TXT": ["v=spf1 a:relay.dawat.example -all"],
            }
        },
        bounces={"address": "box@bounces.dawat.example"},
    )
    (finding,) = found.about(Topic.BOUNCES)
    assert finding.level == Level.OK
    assert (
        "has no MX record; bounces to box@bounces.dawat.example go to its address" in finding.says
    )


def test_without_a_bounce_address_spf_is_the_from_domains(check: Any) -> None:
    found = check(bounces={"address": ""})
    assert found.problems == []
    assert found.envelope_why == (
        "the From domain: with no [bounces] address, from_address is the envelope sender"
    )
    (finding,) = found.about(Topic.BOUNCES)
    assert finding.level == Level.NOTE
    assert "bounces go to news@dawat.example and are matched by reading them" in finding.says


def test_relay_without_starttls(check: Any, plain_relay: int) -> None:
    found = check(port=plain_relay, smtp={"security": "none"})
    line = problem_about(found, Topic.RELAY)
    assert f"the relay relay.dawat.example:{plain_relay} offers no STARTTLS" in line
    assert 'Use the relay\'s submission port: 587 with [smtp] security = "starttls"' in line


def test_relay_on_this_machine(check: Any, plain_relay: int) -> None:
    """The local Postfix or the demo: SPF and the missing STARTTLS are notes."""
    found = check(port=plain_relay, smtp={"host": "127.0.0.1", "security": "none"})
    assert found.problems == [], found.problems
    (spf,) = found.about(Topic.SPF)
    assert spf.level == Level.NOTE
    assert "The relay is 127.0.0.1, on this machine" in spf.says
    assert "whether the record allows that address was not checked" in spf.says
    assert levels(found, Topic.RELAY) == [Level.NOTE]


def test_relay_offering_starttls_to_a_sender_that_does_not_use_it(check: Any) -> None:
    found = check(smtp={"security": "none"})
    (warning,) = found.warnings
    assert warning.topic == Topic.RELAY
    assert 'offers STARTTLS, but [smtp] security = "none" leaves mail unencrypted' in warning.says
    assert warning.fix == 'Set [smtp] security = "starttls".'


def test_relay_name_without_an_address(check: Any) -> None:
    found = check(smtp={"host": "nowhere.dawat.example"})
    assert (
        "cannot find the address of the relay [smtp] host nowhere.dawat.example: "
        "nowhere.dawat.example does not exist in DNS"
    ) in problem_about(found, Topic.RELAY)
    (spf,) = found.about(Topic.SPF)
    assert (spf.level, spf.says) == (
        Level.NOTE,
        "whether dawat.example's SPF record allows the relay was not checked: see Relay.",
    )


def test_relay_speaking_tls_from_the_start(check: Any, certificate: tuple[Path, Path]) -> None:
    """security = "tls" (port 465): the handshake comes first, the certificate checked."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    controller = Controller(
        RecordingHandler(),
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=context,
        ready_timeout=30,
    )
    controller.start()
    try:
        found = check(port=controller.port, smtp={"security": "tls"})
    finally:
        controller.stop()
    (relay,) = found.about(Topic.RELAY)
    assert (relay.level, relay.says) == (
        Level.OK,
        f"the relay relay.dawat.example:{controller.port} speaks TLS from the start, with a "
        "valid certificate.",
    )


def test_relay_certificate_not_trusted(
    server: DnsServer, keys: dict[str, Any], tls_relay: int, tmp_path: Path
) -> None:
    """A certificate the system does not trust fails the check as it would fail a send."""
    server.zone = good_zone(keys)
    settings = settings_for(tmp_path, keys, tls_relay)
    found = diagnose(settings, ("127.0.0.1", server.port), dns_timeout=2.0)
    line = problem_about(found, Topic.RELAY)
    assert (
        f"the relay relay.dawat.example:{tls_relay} shows a certificate that is not to be "
        "trusted (self-signed certificate)"
    ) in line


def test_dns_failures_say_which(check: Any, server: DnsServer) -> None:
    """A domain that does not exist and a DNS server that does not answer read apart."""
    missing = check({"dawat.example": None})
    assert "dawat.example does not exist in DNS" in problem_about(missing, Topic.SPF)
    server.silent = {"dawat.example"}
    try:
        silent = check(timeout=0.2)
    finally:
        server.silent = set()
    assert (
        f"cannot read the SPF record: the DNS server at 127.0.0.1:{server.port} did not "
        "answer about dawat.example within 0.2 s"
    ) in problem_about(silent, Topic.SPF)


SPF_ZONE = {
    "a.example": {"TXT": ["v=spf1 include:b.example -all"]},
    "b.example": {"TXT": ["v=spf1 redirect=c.example"]},
    "c.example": {"TXT": ["v=spf1 mx/24 -all"], "MX": ["10 mail.c.example."]},
    "mail.c.example": {"A": ["198.51.100.1"]},
    "six.example": {"TXT": ["v=spf1 ip6:2001:db8::/32 ?all"]},
    "neutral.example": {"TXT": ["v=spf1 ip4:192.0.2.1"]},
    "broken.example": {"TXT": ["v=spf1 include:nowhere.example -all"]},
    "macro.example": {"TXT": ["v=spf1 exists:%{i}.bl.example -all"]},
    **{
        f"loop{n}.example": {"TXT": [f"v=spf1 include:loop{n + 1}.example -all"]} for n in range(12)
    },
}


@pytest.mark.parametrize(
    ("domain", "address", "result"),
    [
        ("a.example", "198.51.100.77", SpfResult.PASS),  # include -> redirect -> mx/24
        ("a.example", "203.0.113.1", SpfResult.FAIL),
        ("six.example", "2001:db8::25", SpfResult.PASS),
        ("six.example", "127.0.0.1", SpfResult.NEUTRAL),
        ("neutral.example", "127.0.0.1", SpfResult.NEUTRAL),
        ("broken.example", "127.0.0.1", SpfResult.PERMERROR),
        ("macro.example", "127.0.0.1", SpfResult.NOT_EVALUATED),
        ("loop0.example", "127.0.0.1", SpfResult.PERMERROR),  # past 10 look-ups
    ],
)
def test_spf_evaluation(server: DnsServer, domain: str, address: str, result: SpfResult) -> None:
    server.zone = SPF_ZONE
    assert evaluate(Dns(("127.0.0.1", server.port), 0.5), domain, address).result == result


def test_dns_server_option() -> None:
    assert dns_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns_server("[::1]:53") == ("::1", 53)
    assert dns_server("192.0.2.53") == ("192.0.2.53", 53)


def cli_env(keys: dict[str, Any], plain_relay: int) -> dict[str, str]:
    return {
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_PUBLICATION_FROM_ADDRESS": "news@dawat.example",
        "MAILER_SMTP_HOST": "127.0.0.1",
        "MAILER_SMTP_PORT": str(plain_relay),
        "MAILER_SMTP_SECURITY": "none",
        "MAILER_DKIM_DOMAIN": "dawat.example",
        "MAILER_DKIM_SELECTOR": "s1",
        "MAILER_DKIM_PRIVATE_KEY_PATH": keys["path"],
        "MAILER_BOUNCES_ADDRESS": "bounces@dawat.example",
    }


def test_the_command_exits_0_when_nothing_is_a_problem(
    server: DnsServer,
    keys: dict[str, Any],
    plain_relay: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.zone = good_zone(keys)
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("MAILER_")]:
        monkeypatch.delenv(name)  # the settings refuse a MAILER_ variable they do not know
    for name, value in cli_env(keys, plain_relay).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["doctor", "--dns-server", f"127.0.0.1:{server.port}"])
    assert result.exit_code == 0, result.output
    assert "NOTE     Relay    the relay 127.0.0.1" in result.output
    assert "No problems" in result.output or "The domain is ready." in result.output


def test_the_command_names_the_problem_and_exits_1(
    server: DnsServer, keys: dict[str, Any], plain_relay: int, tmp_path: Path
) -> None:
    server.zone = {**good_zone(keys), "s1._domainkey.dawat.example": {"TXT": [keys["other"]]}}
    shown = run_mailer(
        tmp_path, "doctor", "--dns-server", f"127.0.0.1:{server.port}", **cli_env(keys, plain_relay)
    )
    assert shown.returncode == 1, shown.stderr
    assert (
        "PROBLEM  DKIM     the key published at s1._domainkey.dawat.example is not" in shown.stdout
    )
    assert "Fix: Publish this TXT record at s1._domainkey.dawat.example:" in shown.stdout
    assert "1 problem, 1 warning: mail may be refused" in shown.stdout

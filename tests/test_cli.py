"""The `mailer` command as an editor runs it: a real process, a real SQLite file in a
fresh directory, a real SMTP server; exit codes and messages as the user sees them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailer.demo import SAMPLE_ARTICLE
from mailer.testing import TEST_SECRET_KEY, RecordingHandler, commands

IBAN = "NO15 0530 2294 668"


class Mailer:
    def __init__(self, cwd: Path, smtp_port: int):
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        self.env.update(MAILER_SECRET_KEY=TEST_SECRET_KEY, MAILER_SMTP_PORT=str(smtp_port))

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return commands.mailer(args, self.cwd, {**self.env, **(env or {})})

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def fails(self, *args: str, env: dict[str, str] | None = None, code: int = 1) -> str:
        result = self(*args, env=env)
        assert result.returncode == code, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stderr


@pytest.fixture
def mailer(tmp_path: Path, smtp: RecordingHandler) -> Mailer:
    return Mailer(tmp_path, smtp.port)


def test_demo_runs_twice_from_a_fresh_directory_without_sending_twice(tmp_path):
    demo = Mailer(tmp_path, 1)  # the demo starts its own SMTP server
    first = demo.ok("demo")
    assert "sent 5" in first
    maildir = tmp_path / "var" / "maildir" / "new"
    assert len(list(maildir.iterdir())) == 5
    assert (tmp_path / "subscribers.db").is_file()
    assert IBAN in (tmp_path / "var" / "preview.html").read_text(encoding="utf-8")
    assert str(maildir) in first and "preview.html" in first
    second = demo.ok("demo")
    assert "sent 0" in second
    assert len(list(maildir.iterdir())) == 5


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "MAILER_DONATION_IBAN",
            "NO15 0530 2294 669",
            "donation.iban = 'NO15 0530 2294 669': expected a valid IBAN",
        ),
        (
            "MAILER_PUBLICATION_FROM_ADDRESS",
            "newsroom@",
            "publication.from_address = 'newsroom@': expected an email address",
        ),
        (
            "MAILER_SMTP_SECURITY",
            "ssl",
            "smtp.security = 'ssl': expected 'none', 'starttls' or 'tls'",
        ),
        ("MAILER_SMTP_PORT", "twenty-five", "smtp.port = 'twenty-five'"),
        ("MAILER_SMTP_HSOT", "relay.example", "MAILER_SMTP_HSOT: unknown setting"),
    ],
)
def test_a_bad_setting_stops_before_anything_happens(mailer, variable, value, expected):
    stderr = mailer.fails("subscribers", "add", "ana@example.org", env={variable: value})
    assert expected in stderr
    assert not (mailer.cwd / "subscribers.db").exists()


def test_an_unknown_key_or_a_password_in_the_config_file_is_refused(mailer, tmp_path):
    shipped = (Path(__file__).parents[1] / "config" / "mailer.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(shipped.replace("[smtp]\n", '[smtp]\nhots = "relay"\n'), encoding="utf-8")
    assert "smtp.hots: unknown key" in mailer.fails("--config", str(bad), "init")
    bad.write_text(shipped.replace("[smtp]\n", '[smtp]\npassword = "hunter2"\n'), encoding="utf-8")
    assert "MAILER_SMTP_PASSWORD" in mailer.fails("--config", str(bad), "init")


def test_subscribers_add_list_remove_export(mailer):
    assert "Added ana@example.org (active)" in mailer.ok(
        "subscribers", "add", "Ana@Example.org", "--name", "Ana", "--confirmed"
    )
    assert "already on the list" in mailer.fails("subscribers", "add", "ANA@example.ORG")
    assert "not a valid email address" in mailer.fails("subscribers", "add", "ana@@example")
    mailer.ok("subscribers", "add", "bo@example.org")
    listing = mailer.ok("subscribers", "list")
    assert "ana@example.org" in listing and "pending" in listing and "2 subscribers" in listing
    assert "bo@example.org" not in mailer.ok("subscribers", "list", "--status", "active")
    mailer.ok("subscribers", "remove", "bo@example.org")
    exported = mailer.ok("subscribers", "export").splitlines()
    assert exported[0].startswith("email,name,status,frequency")
    assert exported[1].startswith("ana@example.org,Ana,active,every")
    assert exported[2].startswith("bo@example.org,,unsubscribed")


def test_purge_erases_the_address_and_blocks_a_reimport(mailer, tmp_path):
    mailer.ok("subscribers", "add", "ana@example.org", "--confirmed")
    mailer.ok("subscribers", "remove", "ana@example.org", "--purge")
    assert "ana@example.org" not in mailer.ok("subscribers", "list")
    assert "erased" in mailer.fails("subscribers", "add", "ana@example.org")
    csv = tmp_path / "again.csv"
    csv.write_text("email\nana@example.org\n", encoding="utf-8")
    assert (
        "line 2: skipped: ana@example.org is erased"
        in mailer("subscribers", "import", str(csv)).stderr
    )


def test_import_keeps_good_rows_and_reports_each_bad_one(mailer, tmp_path):
    mailer.ok("subscribers", "add", "old@example.org", "--confirmed")
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,name,status\n"
        "ana@example.org,Ana,active\n"
        "not-an-address,Nobody,active\n"
        "bo@example.org,Bo,active,extra\n"
        "ANA@example.org,Ana again,active\n"
        "old@example.org,Old,active\n"
        'cy@example.net,"Cy, Jr.",subscribed\n'
        "dee@example.net,Dee\n",
        encoding="utf-8",
    )
    result = mailer("subscribers", "import", str(csv))
    assert result.returncode == 0, result.stderr
    assert "line 3: rejected: 'not-an-address' is not a valid email address" in result.stderr
    assert "line 4: rejected: expected 3 fields, found 4" in result.stderr
    assert "line 5: rejected: ana@example.org repeats line 2" in result.stderr
    assert "line 6: skipped: old@example.org is already on the list (active)" in result.stderr
    assert "line 7: rejected: unknown status 'subscribed'" in result.stderr
    assert "Imported 2; skipped 1 already on the list; rejected 4." in result.stdout
    listing = mailer.ok("subscribers", "list")
    assert "ana@example.org" in listing and "dee@example.net" in listing
    assert "3 subscribers" in listing


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("email,name\nåse@example.org,Åse\n".encode("latin-1"), "is not UTF-8 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not"),
        (b"name;address\nAna;ana@example.org\n", "must be a header with an 'email' column"),
        (b"email,name,email\nana@example.org,Ana,bo@example.org\n", "names email more than once"),
    ],
)
def test_a_file_that_is_not_utf8_csv_is_refused_whole(mailer, tmp_path, content, expected):
    csv = tmp_path / "list.csv"
    csv.write_bytes(content)
    assert expected in mailer.fails("subscribers", "import", str(csv))
    assert "0 subscribers" in mailer.ok("subscribers", "list")


def test_ingest_derives_a_title_and_a_second_ingest_updates_it(mailer):
    out = mailer.ok("ingest", str(SAMPLE_ARTICLE))
    assert "Article 1 (new): Lavrov’s Dual-Message" in out and "--title" in out
    assert "Left out as the site's boilerplate (11 paragraphs):" in out
    assert "  - Comments are closed." in out
    out = mailer.ok("ingest", str(SAMPLE_ARTICLE), "--title", "Moscow hosts the Taliban")
    assert "Article 1 (updated): Moscow hosts the Taliban" in out
    listing = mailer.ok("articles", "list").splitlines()
    assert len(listing) == 1 and "Moscow hosts the Taliban" in listing[0]


def test_ingest_reads_windows_1252_and_refuses_undecodable_bytes(mailer, tmp_path):
    text = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes(text.encode("cp1252"))
    assert "(new)" in mailer.ok("ingest", str(legacy), "--title", "Legacy")
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"MOSCOW \x81\x8d and more text.\n")
    stderr = mailer.fails("ingest", str(broken))
    assert "broken.txt" in stderr and "0x81" in stderr
    assert mailer.fails("ingest", str(tmp_path / "missing.txt"))


def test_preview_writes_html_and_prints_text(mailer, tmp_path):
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    out = tmp_path / "preview.html"
    mailer.ok("preview", "--latest", "--out", str(out))
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count(IBAN) == 1
    assert "__MAILER_" not in html
    text = mailer.ok("preview", "--latest", "--text")
    assert text.count(IBAN) == 1 and "Unsubscribe" in text
    assert mailer.fails("preview", code=2)


def test_send_asks_first_then_sends_and_reports(mailer, smtp):
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    for address in ("ana@example.org", "bo@example.org"):
        mailer.ok("subscribers", "add", address, "--confirmed")
    assert "add --yes" in mailer.fails("send", "--latest")
    assert "would go to 2 subscribers" in mailer.ok("send", "--latest", "--dry-run")
    assert smtp.received == []
    out = mailer.ok("send", "--latest", "--yes")
    assert "To send: 2 subscribers" in out and "Sent 2, deferred 0, failed 0" in out
    assert len(smtp.received) == 2
    assert "Nothing to send" in mailer.ok("send", "--article", "1", "--yes")
    status = mailer.ok("status", "1")
    assert "sent      2" in status and "(sent)" in status and "messages/s" in status
    assert "no article with id 7" in mailer.fails("send", "--article", "7", "--yes")


# What a send has no use for: the site, the scheduler, the sources' readers, DNS checks,
# on SQLite PostgreSQL's dialect (with its asyncpg module), and in one process the
# machinery of several.
NOT_FOR_A_SEND = (
    *("fastapi", "uvicorn", "apscheduler.schedulers", "feedparser", "httpx", "dns"),
    *("sqlalchemy.dialects.postgresql", "multiprocessing", "ctypes"),
)
SEND_LISTING_MODULES = """
import runpy, sys
sys.argv = ["mailer", "send", "--latest", "--yes"]
try:
    runpy.run_module("mailer", run_name="__main__")
finally:
    print("modules:", " ".join(sorted(sys.modules)), file=sys.stderr)
"""


def test_a_send_starts_without_the_site_scheduler_or_sources(mailer, smtp):
    """`mailer send` in a process of its own loads none of the other commands' stacks:
    they cost a second of start-up."""
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    mailer.ok("subscribers", "add", "ana@example.org", "--confirmed")
    done = subprocess.run(
        [sys.executable, "-c", SEND_LISTING_MODULES],
        cwd=mailer.cwd, env=mailer.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Sent 1, deferred 0, failed 0" in done.stdout, done.stderr
    assert len(smtp.received) == 1
    loaded = set(done.stderr.rpartition("modules: ")[2].split())
    assert "sqlalchemy" in loaded and [name for name in NOT_FOR_A_SEND if name in loaded] == []


def test_the_cycle_collector_is_back_on_after_a_command_that_failed_at_start(
    tmp_path, monkeypatch, capsys
):
    """main() pauses Python's cycle collector while a command starts; a caller of main()
    in-process (a test) has it on again, whatever the command did."""
    import gc

    from mailer.cli import main

    monkeypatch.setattr(sys, "argv", ["mailer", "--config", str(tmp_path / "no.toml"), "status"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 1 and "no.toml does not exist" in capsys.readouterr().err
    assert gc.isenabled()


def test_a_test_copy_goes_to_one_address_and_is_not_recorded(mailer, smtp):
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    mailer.ok("subscribers", "add", "ana@example.org", "--confirmed")
    assert "Test copy sent to editor@example.org" in mailer.ok(
        "send", "--latest", "--test-to", "editor@example.org"
    )
    assert [r.rcpt_tos for r in smtp.received] == [["editor@example.org"]]
    assert smtp.received[0].message["Subject"].startswith("[Test] ")
    assert "No issues yet" in mailer.ok("status")


def test_send_reports_deferred_and_an_unreachable_server(mailer, smtp):
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    mailer.ok("subscribers", "add", "ana@example.org", "--confirmed")
    smtp.refuse_all = "451 4.7.1 Greylisted, try again"
    out = mailer.ok("send", "--latest", "--yes")
    assert "deferred 1" in out and "mailer send --resume" in out
    assert "Greylisted" in mailer.ok("status", "1")
    smtp.refuse_all = None
    out = mailer.ok("send", "--resume")  # the retry is not due yet: nothing goes
    assert "Issue 1" in out and "Sent 0, deferred 0" in out and not smtp.received
    out = mailer.ok("send", "--latest", "--yes")  # by hand: retried at once
    assert "Sent 1" in out and len(smtp.received) == 1
    assert "Nothing to resume" in mailer.ok("send", "--resume")
    mailer.ok("subscribers", "add", "bo@example.org", "--confirmed")
    stderr = mailer.fails("send", "--latest", "--yes", env={"MAILER_SMTP_PORT": "1"})
    assert "cannot connect to 127.0.0.1:1" in stderr


def test_catcher_stores_what_it_receives_in_a_maildir(tmp_path):
    import signal
    import smtplib

    from mailer.catcher import free_port

    maildir, said = tmp_path / "var" / "maildir", ""
    command = [sys.executable, "-m", "mailer", "catcher", "--maildir", str(maildir), "--port"]
    for _ in range(5):  # a free port can be taken before the catcher binds it (busy CI)
        port = free_port()
        process = subprocess.Popen(
            [*command, str(port)], cwd=tmp_path, env=Mailer(tmp_path, port).env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        first = process.stdout.readline()
        if first or "address already in use" not in (said := process.communicate()[1]):
            break
    try:
        assert f"Catching mail on 127.0.0.1:{port}" in first, first or said
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
        assert "stored: to b@example.org: hi" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    stored = list((maildir / "new").iterdir())
    assert len(stored) == 1
    content = stored[0].read_bytes()
    assert b"Delivered-To: b@example.org" in content and content.endswith(b"hello\r\n")


def test_demo_refuses_a_database_with_a_newsrooms_own_data(mailer):
    mailer.ok("subscribers", "add", "real.reader@example.org", "--confirmed")
    assert "holds 1 subscribers" in mailer.fails("demo")
    assert "real.reader@example.org" in mailer.ok("subscribers", "list")
    assert "amina" not in mailer.ok("subscribers", "list")


def test_an_issue_whose_last_reader_left_is_settled_not_left_sending(mailer, smtp):
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    mailer.ok("subscribers", "add", "ana@example.org", "--confirmed")
    smtp.refuse_all = "451 4.7.1 Greylisted, try again"
    assert "deferred 1" in mailer.ok("send", "--latest", "--yes")
    mailer.ok("subscribers", "remove", "ana@example.org")
    assert "Nothing to send" in mailer.ok("send", "--latest", "--yes")
    status = mailer.ok("status", "1")
    assert "(sent)" in status and "skipped   1" in status
    assert smtp.received == []


def test_dkim_keygen_prints_the_record_and_signed_mail_verifies(mailer, smtp):
    import dkim

    from mailer.signing import txt_value

    out = mailer.ok("dkim", "keygen", "--selector", "mail2026")
    record = next(line.strip() for line in out.splitlines() if "IN TXT" in line)
    assert record.startswith("mail2026._domainkey.dawatmedia.example. IN TXT")
    key = mailer.cwd / "var" / "dkim" / "mail2026.pem"
    assert "already" in mailer.fails("dkim", "keygen", "--selector", "mail2026")
    mailer.env.update(
        MAILER_DKIM_DOMAIN="dawatmedia.example",
        MAILER_DKIM_SELECTOR="mail2026",
        MAILER_DKIM_PRIVATE_KEY_PATH=str(key),
    )
    mailer.ok("ingest", str(SAMPLE_ARTICLE))
    mailer.ok("subscribers", "add", "ana@example.org", "--confirmed")
    mailer.ok("send", "--latest", "--yes")
    [received] = smtp.received
    assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: txt_value(record))


def test_progress_off_a_terminal_is_a_plain_line_with_counts_and_rate(capsys):
    from mailer.cli.output import progress_reporter

    with progress_reporter(3, every=0) as advance:
        for status in ("sent", "failed", "sent"):
            advance(status)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("3/3 handled: 2 sent, 1 failed, 0 deferred, ")
    assert lines[-1].endswith("/s")


def test_serve_answers_on_its_port_and_stops_on_ctrl_c(tmp_path):
    import signal

    import httpx

    from mailer.catcher import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", str(port)],
        cwd=tmp_path, env=Mailer(tmp_path, 25).env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert f"on http://127.0.0.1:{port}" in process.stdout.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "nothing listening"
                time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err

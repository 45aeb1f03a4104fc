"""How close a send comes to what the machine allows: the sample article to N subscribers
of a fresh SQLite file, through Postfix's smtp-sink (a C server that discards mail), next
to smtp-source (a C client) pushing messages of the same size into the same sink: the
ceiling, at each of the connection counts (4 and 8), with and without DKIM. Also a naive
per-recipient render-and-connect sender, the send in two editions (half the readers in
fa-AF) against one, and the peak memory of a send at two list sizes. Prints a table and
the targets.

    .venv/bin/python bench/send.py [N] [--connections 4,8] [--rss-sizes 10000,100000]
                                       [--skip-rss] [--skip-editions] [--naive 300]

Needs Postfix's smtp-sink and smtp-source (apt-get install postfix); installs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import Engine, func, insert, select

import mailer
from mailer.articles import ingest_file
from mailer.catcher import free_port
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.issues import article_issue, as_rendered
from mailer.messages import MessageBuilder, Recipient, fill
from mailer.models import DELIVERIES, SUBSCRIBERS, Article, DeliveryStatus, utcnow
from mailer.render import render_article_issue
from mailer.settings import Settings
from mailer.signing import generate_key
from mailer.testing import TEST_SECRET_KEY, empty_postgres, make_settings
from mailer.tokens import PREFERENCES, UNSUBSCRIBE, make_token

HOST = "127.0.0.1"
DKIM_DOMAIN, DKIM_SELECTOR = "dawatmedia.example", "bench"


@dataclass
class Row:
    run: str
    messages: int
    seconds: float
    cpu_seconds: float | None = None
    rss_mb: float | None = None  # the largest process
    total_mb: float | None = None  # all the run's processes together

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


@dataclass
class Mailing:
    """A fresh database with N active subscribers and the sample article's issue."""

    folder: Path
    settings: Settings
    article: Article
    size: int


# --- Postfix's tools ------------------------------------------------------------------


def postfix_tool(name: str) -> str | None:
    # /usr/sbin is often not on a user's PATH, but that is where Debian puts them.
    found = shutil.which(name) or f"/usr/sbin/{name}"
    return found if os.access(found, os.X_OK) else None


@dataclass
class Sink:
    port: int
    command: list[str]
    counters: Path  # what -c prints: "sess=N quit=N mesg=N", each ending in a CR

    def counts(self) -> tuple[int, int]:
        """SMTP sessions and messages the sink has received so far."""
        with self.counters.open("rb") as counters:
            counters.seek(max(0, counters.seek(0, os.SEEK_END) - 200))
            found = re.findall(rb"sess=(\d+) quit=\d+ mesg=(\d+)", counters.read())
        return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)

    def received_since(self, before: tuple[int, int], expected: int) -> tuple[int, int]:
        """Sessions and messages since `before`. The sink counts a message after it has
        answered it, so it may lag the client by a moment."""
        deadline = time.monotonic() + 5
        while self.counts()[1] - before[1] < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # and for the end of the last session, after its last message
        sessions, messages = self.counts()
        return sessions - before[0], messages - before[1]


@contextmanager
def smtp_sink(tool: str, folder: Path) -> Iterator[Sink]:
    """smtp-sink on 127.0.0.1 and a free port: discards every message, no delays (no -w,
    -W or -H). A backlog of 1024 so that no connection waits in a short accept queue;
    -c for its counters, to check what arrived. Killed on the way out, whatever happened."""
    port = free_port()
    # smtp-sink refuses to run as root without a user to switch to.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    command = [tool, "-c", *user, f"{HOST}:{port}", "1024"]
    sink = Sink(port, command, folder / "smtp-sink.counters")
    errors = folder / "smtp-sink.errors"  # a file: a pipe nobody reads could stall the sink
    with sink.counters.open("wb") as counters, errors.open("wb") as warnings:
        process = subprocess.Popen(command, stdout=counters, stderr=warnings)
    try:
        _wait_until_listening(process, port, errors)
        yield sink
    finally:
        process.kill()
        process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, errors: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"smtp-sink stopped: {errors.read_text(errors='replace').strip()}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"smtp-sink is not listening on {HOST}:{port} after 10 s")


# --- measuring a child process --------------------------------------------------------


# Linux hands a process's peak RSS at exec on to the program it execs: a child spawned
# straight from this script (100 MB and more after setting up a list) would report at
# least this script's peak. So a small Python process starts each measured command and
# reports that command's own rusage, from os.wait4, to the file named first. A send may
# start helper processes; ru_maxrss is the largest of them, not their sum, so the
# launcher also adds up the RSS of every process of its session every 50 ms.
MEASURE = """
import json, os, subprocess, sys, threading, time
PAGE, SESSION, ME = os.sysconf("SC_PAGE_SIZE"), os.getsid(0), os.getpid()
peak = {"bytes": 0, "processes": 0}
done = threading.Event()

def session_rss():
    total = count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == ME:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == SESSION:  # fields from "state": session is the 4th, rss 22nd
            total, count = total + int(fields[21]) * PAGE, count + 1
    return total, count

def sample():
    while not done.wait(0.05):
        total, count = session_rss()
        peak["bytes"], peak["processes"] = max(peak["bytes"], total), max(peak["processes"], count)

threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
done.set()
result = {
    "seconds": seconds,
    "cpu": usage.ru_utime + usage.ru_stime,  # with the helpers it waited for
    "rss_mb": usage.ru_maxrss / 1024,  # the largest single process
    "total_mb": peak["bytes"] / 2**20,
    "processes": peak["processes"],
    "exit": os.waitstatus_to_exitcode(status),
}
with open(sys.argv[1], "w") as out:
    json.dump(result, out)
"""


@dataclass
class Measured:
    seconds: float
    cpu: float
    rss_mb: float
    total_mb: float
    processes: int
    exit: int
    printed: str = ""


def run_measured(
    command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Measured:
    """Run a command to its end: wall seconds, CPU seconds, the peak RSS of its largest
    process and of all its processes together (MB), and what it printed."""
    with tempfile.TemporaryDirectory() as scratch:
        report, output = Path(scratch) / "rusage.json", Path(scratch) / "output"
        with output.open("wb") as out:
            # its own session: on Ctrl-C or SIGTERM the whole group is killed, so that no
            # send goes on behind our back
            launcher = subprocess.Popen(
                [sys.executable, "-c", MEASURE, str(report), *command],
                env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
            try:
                launcher.wait()
            except BaseException:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
                raise
        printed = output.read_text(errors="replace")
        if launcher.returncode != 0 or not report.is_file():
            raise SystemExit(f"measuring {' '.join(command)} failed:\n{printed[-3000:]}")
        measured = Measured(**json.loads(report.read_text()), printed=printed)
    if measured.exit != 0:
        raise SystemExit(f"{' '.join(command)} exited {measured.exit}:\n{printed[-3000:]}")
    return measured


# --- the mailing ----------------------------------------------------------------------


def make_mailing(
    folder: Path,
    size: int,
    smtp_port: int,
    connections: int,
    database_url: str | None = None,
    second_language: str | None = None,
) -> Mailing:
    """A fresh database (a SQLite file, or the PostgreSQL database at `database_url`,
    emptied), `size` active subscribers, the sample article and its issue; with
    `second_language`, every second reader reads that language first (their edition)."""
    folder.mkdir(parents=True, exist_ok=True)
    if database_url:
        empty_postgres(database_url)
    settings = make_settings(folder, smtp_port, database_url, smtp={"max_connections": connections})
    engine = open_database(settings.database.url)
    add_subscribers(engine, size, second_language)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    article_issue(engine, settings, article)
    engine.dispose()
    return Mailing(folder, settings, article, size)


# --donors: the share of readers (in %) who get the donors' copy (the thanks variant)
DONOR_PERCENT = 0


def add_subscribers(engine: Engine, count: int, second_language: str | None = None) -> None:
    # Core executemany in chunks: import_csv validates each address and would take
    # longer than the send itself at 100,000.
    now = utcnow()
    donor_until = now + timedelta(days=90)
    chunk = 20_000
    with engine.begin() as connection:
        for first in range(0, count, chunk):
            rows = [
                {
                    "email": f"reader{i}@example.org",
                    "status": "active",
                    "frequency": "every",
                    "created_at": now,
                    "confirmed_at": now,
                    "donor_until": donor_until if i % 100 < DONOR_PERCENT else None,
                    "languages": second_language if i % 2 else None,
                }
                for i in range(first, min(first + chunk, count))
            ]
            connection.execute(insert(SUBSCRIBERS), rows)


def message_size(mailing: Mailing) -> int:
    """Bytes of one message as the engine builds it: what smtp-source is told to send."""
    engine = open_database(mailing.settings.database.url)
    issue = article_issue(engine, mailing.settings, mailing.article)
    engine.dispose()
    builder = MessageBuilder(mailing.settings, as_rendered(issue), issue_id=issue.id)
    return len(builder.build(Recipient(1, "reader0@example.org")).data)


def sent_count(mailing: Mailing) -> int:
    engine = open_database(mailing.settings.database.url)
    query = select(func.count()).where(DELIVERIES.c.status == DeliveryStatus.SENT)
    with engine.connect() as connection:
        count = int(connection.execute(query).scalar_one())
    engine.dispose()
    return count


# --- the runs -------------------------------------------------------------------------


def ceiling(source: str, sink: Sink, count: int, connections: int, size: int) -> Row:
    """smtp-source: `connections` sessions in parallel, each reusing its connection (-d)
    as the engine does, `count` messages with `size` bytes of body in all."""
    command = [source, "-s", str(connections), "-m", str(count), "-l", str(size), "-d"]
    command.append(f"{HOST}:{sink.port}")
    note(f"ceiling: {' '.join(command)}")
    before = sink.counts()
    measured = run_measured(command)
    arrived(sink, before, count, "smtp-source")
    # No RSS: smtp-source's own is a megabyte or two, below what the launcher leaves.
    return Row(f"ceiling: smtp-source, {connections} conn", count, measured.seconds, measured.cpu)


def send_env(
    mailing: Mailing, sink: Sink, connections: int, dkim: dict[str, str] | None
) -> dict[str, str]:
    """The environment of a `mailer send` on the mailing's database, into the sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: with bytecode, see warm_bytecode
    env.update(
        PYTHONPYCACHEPREFIX=str(BYTECODE),
        # absolute: the send runs in the mailing's folder
        MAILER_CONFIG=str(Path(str(mailing.settings.config_path)).resolve()),
        MAILER_DATABASE_URL=mailing.settings.database.url,
        MAILER_SMTP_HOST=HOST,
        MAILER_SMTP_PORT=str(sink.port),
        MAILER_SMTP_SECURITY="none",
        MAILER_SMTP_USERNAME="",
        MAILER_SECRET_KEY=TEST_SECRET_KEY,
        MAILER_SMTP_MAX_CONNECTIONS=str(connections),
    )
    for key, value in (dkim or {}).items():
        env[f"MAILER_DKIM_{key.upper()}"] = value
    return env


# Where the sends' processes find mailer's compiled bytecode: an installed mailer has it
# from the install, while a checkout under PYTHONDONTWRITEBYTECODE would compile every
# module of its own in every process.
BYTECODE = Path(tempfile.gettempdir()) / "mailer-bench-bytecode"


def warm_bytecode() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    package = str(Path(mailer.__file__).parent)
    command = [sys.executable, "-m", "compileall", "-q", package]
    subprocess.run(command, env={**env, "PYTHONPYCACHEPREFIX": str(BYTECODE)}, check=True)


def mailer_send(
    mailing: Mailing,
    sink: Sink,
    label: str,
    dkim: dict[str, str] | None = None,
    languages: str = "",
) -> Row:
    """`mailer send --article ID --yes` in its own process, as an editor runs it: from
    the enqueue to the last outcome recorded, with the process start and the render;
    with `languages`, the publication's ([publication] languages)."""
    env = send_env(mailing, sink, mailing.settings.smtp.max_connections, dkim)
    if languages:
        env["MAILER_PUBLICATION_LANGUAGES"] = languages
    command = [sys.executable, "-m", "mailer", "send", "--article", str(mailing.article.id)]
    note(f"{label}: {plural(mailing.size, 'message')}")
    before = sink.counts()
    measured = run_measured([*command, "--yes"], env=env, cwd=mailing.folder)
    return checked(mailing, sink, label, before, measured)


def workers_send(mailing: Mailing, sink: Sink, label: str, workers: int) -> Row:
    """`workers` processes of `mailer send --worker --article ID --yes` started at once,
    sharing the connections, as on several machines: from their start to the last end."""
    share = max(1, mailing.settings.smtp.max_connections // workers)
    env = send_env(mailing, sink, share, None)
    command = [sys.executable, "-m", "mailer", "send", "--worker", "--yes"]
    command += ["--article", str(mailing.article.id)]
    line = " ".join(shlex.quote(part) for part in command)
    script = " & ".join([line] * workers) + " & wait"
    note(f"{label}: {plural(mailing.size, 'message')}, {workers} x {share} connections")
    before = sink.counts()
    measured = run_measured(["sh", "-c", script], env=env, cwd=mailing.folder)
    return checked(mailing, sink, label, before, measured)


def checked(
    mailing: Mailing, sink: Sink, label: str, before: tuple[int, int], measured: Measured
) -> Row:
    """The run's row, once the database and the sink agree that every message went."""
    sent = sent_count(mailing)
    if sent != mailing.size:
        output = measured.printed[-3000:]
        raise SystemExit(f"{label}: {sent} of {mailing.size} recorded sent:\n{output}")
    arrived(sink, before, mailing.size, label)
    note(f"{label}: {plural(measured.processes, 'process', 'processes')} at most at once")
    return Row(label, sent, measured.seconds, measured.cpu, measured.rss_mb, measured.total_mb)


def naive(mailing: Mailing, sink: Sink, count: int) -> Row:
    """What a first script would do: Jinja2 and premailer for every reader, an
    EmailMessage, and a new SMTP connection for each. Runs in this process (no RSS)."""
    settings, secret = mailing.settings, mailing.settings.secret_key
    publication = settings.publication
    note(f"naive: {plural(count, 'message')}")
    before = sink.counts()
    cpu_before, start = time.process_time(), time.perf_counter()
    for i in range(count):
        address = f"reader{i}@example.org"
        rendered = render_article_issue(settings, mailing.article)  # Jinja2 + premailer
        link = f"{publication.base_url}/unsubscribe/{make_token(secret, UNSUBSCRIBE, i + 1)}"
        message = EmailMessage()
        message["From"] = publication.from_address
        message["To"] = address
        message["Subject"] = rendered.subject
        message["List-Unsubscribe"] = f"<{link}>"
        prefs = f"{publication.base_url}/preferences/{make_token(secret, PREFERENCES, i + 1)}"
        message.set_content(fill(rendered.text, address, link, prefs))
        message.add_alternative(fill(rendered.html, address, link, prefs), subtype="html")
        with smtplib.SMTP(HOST, sink.port) as connection:
            connection.send_message(message)
    seconds = time.perf_counter() - start
    arrived(sink, before, count, "naive")
    return Row("naive: render + connect each", count, seconds, time.process_time() - cpu_before)


def arrived(sink: Sink, before: tuple[int, int], expected: int, label: str) -> None:
    """The sink's own count, so that a run cannot pass by recording sends it never made."""
    sessions, messages = sink.received_since(before, expected)
    if messages != expected:
        raise SystemExit(f"{label}: the sink received {messages:,} of {expected:,} messages")
    got = f"{plural(messages, 'message')} in {plural(sessions, 'SMTP session')}"
    note(f"{label}: the sink received {got}")


def dkim_settings(folder: Path) -> dict[str, str]:
    key = folder / "dkim.pem"
    generate_key(key, DKIM_SELECTOR, DKIM_DOMAIN)
    return {"domain": DKIM_DOMAIN, "selector": DKIM_SELECTOR, "private_key_path": str(key)}


# --- output ---------------------------------------------------------------------------

COLUMNS = [("run", 38), ("messages", 9), ("seconds", 9), ("messages/s", 11), ("CPU s", 8)]
COLUMNS += [("peak RSS MB", 12), ("total MB", 9)]


def table(rows: list[Row]) -> str:
    def line(cells: list[str]) -> str:
        (first, (_, width)), *rest = zip(cells, COLUMNS, strict=True)
        return first.ljust(width) + "".join(cell.rjust(w) for cell, (_, w) in rest)

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [line([name for name, _ in COLUMNS])]
    for r in rows:
        cells = [r.run, f"{r.messages:,}", number(r.seconds, 2), number(r.rate, 0)]
        sizes = [number(r.rss_mb, 0), number(r.total_mb, 0)]
        lines.append(line([*cells, number(r.cpu_seconds, 2), *sizes]))
    return "\n".join(lines)


def verdict(name: str, value: float | None, target: str, unit: str = "") -> str:
    """'name value (target PASS|MISS)'; target is '>=0.5', '<=1.3' or '<200'."""
    if value is None:
        return f"{name} not measured (target {target}{unit})"
    operator, bound = target.rstrip("0123456789."), float(target.lstrip("<>="))
    passes = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[operator]
    shown = f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.0f}"
    return f"{name} {shown}{unit} ({target}{unit} {'PASS' if passes else 'MISS'})"


def cpu_ms(row: Row) -> float | None:
    """CPU-ms per message: what the machine's two cores, shared with the sink, divide."""
    return None if row.cpu_seconds is None else 1000 * row.cpu_seconds / row.messages


def rsa_ms(dkim: dict[str, str], count: int = 200) -> float:
    """CPU-ms of one RSA signature with the bench's key, alone (OpenSSL): the part of a
    signed message's cost that no engine work takes away."""
    key = serialization.load_pem_private_key(Path(dkim["private_key_path"]).read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    started = time.process_time()
    for n in range(count):
        key.sign(b"dkim-signature:v=1; b=%d" % n, padding.PKCS1v15(), hashes.SHA256())
    return 1000 * (time.process_time() - started) / count


def rate_targets(rows: dict[str, Row], connections: list[int], rsa: float | None) -> list[str]:
    """At each connection count: mailer/ceiling >= 0.5 with and without DKIM, and the
    CPU-ms per message of both. The signed rate is bound by RSA (about 0.7 CPU-ms) near
    0.2-0.25 of the ceiling here: its own target is that everything but the signature
    costs what it costs without (the signed CPU-ms less RSA within 10% of the plain)."""
    verdicts = []
    for c in connections:
        ceiling, plain, signed = (rows[f"{k}{c}"] for k in ("ceiling", "mailer", "dkim"))
        ceiling_rate = ceiling.rate
        verdicts.append(verdict(f"mailer/ceiling at {c}", plain.rate / ceiling_rate, ">=0.5"))
        # information: RSA bounds it (see above)
        verdicts.append(f"+DKIM/ceiling at {c} {signed.rate / ceiling_rate:.3f}")
        plain_ms, signed_ms = cpu_ms(plain), cpu_ms(signed)
        verdicts.append(f"CPU-ms/message at {c} {plain_ms or 0:.3f}, +DKIM {signed_ms or 0:.3f}")
        if plain_ms and signed_ms and rsa is not None:
            bound = f"<={plain_ms * 1.1:.3f}"
            verdicts.append(verdict(f"+DKIM less RSA ({rsa:.3f}) at {c}", signed_ms - rsa, bound))
    return verdicts


def summary(
    rows: dict[str, Row], rss_sizes: list[int], connections: list[int], rsa: float | None
) -> str:
    small, large = rows.get("rss_small"), rows.get("rss_large")
    growth = None  # of all the send's processes together: helpers count too
    if small and large and small.total_mb and large.total_mb:
        growth = large.total_mb / small.total_mb
    a, b = (f"{n // 1000}k" if n % 1000 == 0 else str(n) for n in rss_sizes)
    return "; ".join(
        [
            *rate_targets(rows, connections, rsa),
            verdict("fixed cost (one reader)", rows["one"].seconds, "<=0.5", " s"),
            # information: no sender can be 100 times faster here (the ceiling itself)
            f"mailer/naive {rows[f'mailer{connections[0]}'].rate / rows['naive'].rate:.0f}",
            verdict(f"RSS{b}/RSS{a}", growth, "<=1.3"),
            verdict(f"RSS at {b}", large.total_mb if large else None, "<200", " MB"),
            verdict("two editions/one (time)", editions_ratio(rows, connections[0]), "<=1.1"),
        ]
    )


def editions_ratio(rows: dict[str, Row], connections: int) -> float | None:
    """The time of the send in two editions over that in one, the two sends of each
    (before and after) added up: other work on the machine weighs on both alike."""
    one = [rows[k].seconds for k in (f"mailer{connections}", "one_language") if k in rows]
    two = [rows[k].seconds for k in ("two_languages", "two_languages_2") if k in rows]
    if not one or not two:
        return None
    return (sum(two) / len(two)) / (sum(one) / len(one))


# --- main -----------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("subscribers", nargs="?", type=int, default=20_000, metavar="N")
    parser.add_argument(
        "--connections", default="4,8", metavar="C,C",
        help="parallel connections, each count measured in turn (default: 4,8)",
    )  # fmt: skip
    parser.add_argument(
        "--rss-sizes", default="10000,100000", metavar="SMALL,LARGE",
        help="list sizes whose send's peak RSS is compared",
    )  # fmt: skip
    parser.add_argument("--skip-rss", action="store_true", help="leave out the RSS sends")
    parser.add_argument(
        "--skip-editions", action="store_true",
        help="leave out the sends in two editions (half the readers fa-AF) and one again",
    )  # fmt: skip
    parser.add_argument(
        "--donors", type=int, default=0, metavar="PERCENT",
        help="readers who are donors (they get the thanks variant), in %% of the list",
    )  # fmt: skip
    parser.add_argument(
        "--naive", type=int, default=300, metavar="M", help="messages for the naive sender"
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("MAILER_BENCH_POSTGRES_URL", ""), metavar="URL",
        help="a throwaway PostgreSQL database (emptied!) for the line of 2 workers on it; "
        "default $MAILER_BENCH_POSTGRES_URL, else the line is left out",
    )  # fmt: skip
    args = parser.parse_args()
    args.rss_sizes = [int(n) for n in args.rss_sizes.split(",")]
    if len(args.rss_sizes) != 2:
        parser.error("--rss-sizes takes two sizes: SMALL,LARGE")
    args.connections = [int(c) for c in args.connections.split(",")]
    return args


def plural(count: int, word: str, words: str = "") -> str:
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def note(message: str) -> None:
    """Progress on stderr: the whole run takes minutes."""
    print(f"# {message}", file=sys.stderr, flush=True)


def main() -> None:
    global DONOR_PERCENT
    args = arguments()
    DONOR_PERCENT = args.donors
    sink_tool, source_tool = postfix_tool("smtp-sink"), postfix_tool("smtp-source")
    if sink_tool is None or source_tool is None:
        print("needs Postfix's smtp-sink and smtp-source: apt-get install postfix")
        sys.exit(2)
    # `timeout` and kill send SIGTERM: made an exit, so that the sink and a send under
    # way are killed on the way out too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n, counts = args.subscribers, args.connections
    # Other work on the machine shows in every figure: say how busy it was.
    note(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start")
    rows: dict[str, Row] = {}
    warm_bytecode()
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        folder = Path(tmp)
        dkim = dkim_settings(folder)
        rsa = rsa_ms(dkim)
        with smtp_sink(sink_tool, folder) as sink:
            note(f"sink: {' '.join(sink.command)}")
            for connections in counts:
                # The setting, not what the engine makes of it: the sink counts sessions,
                # not how many were open at once.
                label = f", {connections} conn"
                mailing = make_mailing(folder / f"plain{connections}", n, sink.port, connections)
                size = message_size(mailing)
                note(f"one message: {size:,} bytes")
                rows[f"ceiling{connections}"] = ceiling(source_tool, sink, n, connections, size)
                rows[f"mailer{connections}"] = mailer_send(mailing, sink, f"mailer send{label}")
                if connections == counts[0] and not args.skip_editions:
                    editions(rows, folder, sink, n, connections)
                mailing = make_mailing(folder / f"dkim{connections}", n, sink.port, connections)
                signed = f"mailer send{label} + DKIM"
                rows[f"dkim{connections}"] = mailer_send(mailing, sink, signed, dkim)
            connections = counts[0]
            label = f", {connections} conn"
            mailing = make_mailing(folder / "naive", 1, sink.port, connections)
            rows["naive"] = naive(mailing, sink, args.naive)
            # One message: what every send pays whatever the list's size (start, imports,
            # render), to read the rates above by.
            mailing = make_mailing(folder / "one", 1, sink.port, connections)
            rows["one"] = mailer_send(mailing, sink, f"mailer send{label}, 1 (fixed cost)")
            if args.postgres:
                mailing = make_mailing(folder / "pg", n, sink.port, connections, args.postgres)
                label_pg = f"2 workers on PostgreSQL{label}"
                rows["workers"] = workers_send(mailing, sink, label_pg, workers=2)
            else:
                note("no --postgres: the line of 2 workers on PostgreSQL is left out")
            if not args.skip_rss:
                for key, count in zip(("rss_small", "rss_large"), args.rss_sizes, strict=True):
                    mailing = make_mailing(folder / key, count, sink.port, connections)
                    rows[key] = mailer_send(mailing, sink, f"mailer send{label}, {count:,}")
    note(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(table(list(rows.values())))
    print(summary(rows, args.rss_sizes, counts, rsa))


def editions(rows: dict[str, Row], folder: Path, sink: Sink, n: int, connections: int) -> None:
    """Right after the plain send, one language and two back to back: one, two, two, one."""
    label = f", {connections} conn"
    two = f"mailer send{label}, 2 editions (half fa-AF)"
    for key in ("two_languages", "two_languages_2"):
        mailing = make_mailing(folder / key, n, sink.port, connections, None, "fa-AF")
        rows[key] = mailer_send(mailing, sink, two, languages="en,fa-AF")
    mailing = make_mailing(folder / "one_language", n, sink.port, connections)
    rows["one_language"] = mailer_send(mailing, sink, f"mailer send{label}, again")


if __name__ == "__main__":
    main()

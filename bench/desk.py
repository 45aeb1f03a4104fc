"""How fast the site and the editors' desk answer at a real newsroom's scale: 100,000
subscribers, 500 articles and 200 sent issues (two of them to all 100,000 readers, the
rest to 1,000 each: about 400,000 deliveries), seeded through SQLAlchemy Core into a
fresh SQLite file or an emptied PostgreSQL database. Then `mailer serve` runs against it
as a user runs it, and each page in PAGES is fetched N times over HTTP; the subscriber
search is timed in-process. Prints a table of median and p95 ms and flags any page over
300 ms.

    .venv/bin/python bench/desk.py [--postgres URL] [--runs 20] [--editor EMAIL:PASSWORD]

Desk pages need a signed-in editor (--editor; the account is made with `mailer editors
add` if that command exists); they are reported "not yet built" while /desk/login is 404.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import islice
from pathlib import Path

import httpx
from sqlalchemy import Engine, insert, select, update

from mailer.articles import ingest_file
from mailer.catcher import free_port
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.desk_overview import readers_over_time
from mailer.issues import article_issue
from mailer.links import issue_slug
from mailer.models import (
    ARTICLES,
    AUDIT_EVENTS,
    DELIVERIES,
    ISSUES,
    SUBSCRIBERS,
    Article,
    AuditAction,
    DeliveryStatus,
    IssueStatus,
    SubscriberStatus,
    new_public_id,
    utcnow,
)
from mailer.report import issue_report, list_issues
from mailer.settings import Settings
from mailer.subscribers import list_subscribers
from mailer.testing import TEST_SECRET_KEY, empty_postgres, make_settings

HOST = "127.0.0.1"
LIMIT_MS = 300.0
SUBSCRIBERS_COUNT, ARTICLES_COUNT, ISSUES_COUNT = 100_000, 500, 200
BIG_ISSUES, SMALL_AUDIENCE = 2, 1_000
AUDIT_COUNT = 5_000
BATCH = 10_000


@dataclass(frozen=True)
class Page:
    """A page to time: `path` may name {big_slug}, {big_id}, {needle} and {reader_id};
    `desk` pages need a signed-in editor."""

    label: str
    path: str
    desk: bool = False


# Add each desk page here as it lands.
PAGES = [
    Page("archive (home)", "/"),
    Page("read online, issue to 100,000", "/issues/{big_slug}"),
    Page("subscribe form", "/subscribe"),
    Page("desk: dashboard", "/desk", desk=True),
    Page("desk: articles", "/desk/articles", desk=True),
    Page("desk: one article (the sample, sent to 100,000)", "/desk/articles/1", desk=True),
    Page("desk: issue to 100,000", "/desk/issues/{big_id}", desk=True),
    Page("desk: its progress (JSON)", "/desk/issues/{big_id}/progress.json", desk=True),
    Page("desk: send page of a sent article", "/desk/articles/1/send", desk=True),
    Page("desk: subscriber search", "/desk/subscribers?q={needle}", desk=True),
    # the subscriber list's other ways in (admins): a common name, the filters, the
    # deepest page, and one reader
    Page("desk: subscribers, first page", "/desk/subscribers", desk=True),
    Page("desk: subscriber search, 'berg' (8,500 found)", "/desk/subscribers?q=berg", desk=True),
    Page("desk: subscribers, bounced", "/desk/subscribers?status=bounced", desk=True),
    Page(
        "desk: subscribers, active + weekly, page 2",
        "/desk/subscribers?status=active&frequency=weekly&page=2",
        desk=True,
    ),
    Page("desk: subscribers, last page (2,000)", "/desk/subscribers?page=2000", desk=True),
    Page("desk: one subscriber", "/desk/subscribers/{reader_id}", desk=True),
    # the overview: the dashboard above carries the readers' chart
    Page("desk: this week's digest, with preview", "/desk/digest", desk=True),
    Page("desk: audit log, newest 50", "/desk/audit", desk=True),
    Page("desk: audit log, one action, page 3", "/desk/audit?action=signed-in&page=3", desk=True),
]


@dataclass
class Seeded:
    big_slug: str
    big_id: int
    needle: str  # part of one subscriber's address, near the end of the list
    reader_id: int  # that subscriber


@dataclass
class Timing:
    label: str
    median_ms: float | None = None
    p95_ms: float | None = None
    note: str = ""


# --- seeding --------------------------------------------------------------------------

FIRST = "amina lars farid ingrid sofia omar elena jonas maryam pieter chloe tariq nadia"
LAST = "rahimi hansen noori berg haddad lindqvist moreau karimi novak jensen osei ahmadi"
FIRST_NAMES, LAST_NAMES = FIRST.split(), LAST.split()
STATUSES = [
    (SubscriberStatus.ACTIVE, 85),
    (SubscriberStatus.PENDING, 4),
    (SubscriberStatus.UNSUBSCRIBED, 8),
    (SubscriberStatus.BOUNCED, 3),
]
FREQUENCIES = [("every", 70), ("weekly", 25), ("articles", 5)]
TOPICS = [
    "City council votes on the new budget",
    "Floods close the river road again",
    "The election, district by district",
    "Schools reopen after the strike",
    "Interview: the mayor on housing",
    "Hospitals wait for winter",
    "A year of the new tram line",
    "Farmers and the drought",
    "What the court decided, and why",
    "Refugees find work in the north",
]
TWO_YEARS = timedelta(days=730)


def weighted(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    values, weights = zip(*choices, strict=True)
    return str(rng.choices(values, weights)[0])


def subscriber_rows(rng: random.Random, now: datetime) -> Iterator[dict[str, object]]:
    for i in range(1, SUBSCRIBERS_COUNT + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        status = weighted(rng, STATUSES)
        created = now - TWO_YEARS * rng.random()
        confirmed = None if status == SubscriberStatus.PENDING else created + timedelta(minutes=7)
        left = None
        if status == SubscriberStatus.UNSUBSCRIBED:
            left = created + (now - created) * rng.random()
        yield {
            "public_id": new_public_id(),
            "email": f"{first}.{last}{i}@example.org",
            "name": f"{first.title()} {last.title()}",
            "status": status,
            "frequency": weighted(rng, FREQUENCIES),
            "created_at": created,
            "confirmation_sent_at": created,
            "confirmed_at": confirmed,
            "unsubscribed_at": left,
            "consent_ip": None if confirmed is None else f"192.0.2.{rng.randrange(1, 255)}",
        }


def in_batches(engine: Engine, table: object, rows: Iterator[dict[str, object]]) -> None:
    with engine.begin() as connection:
        while batch := list(islice(rows, BATCH)):
            connection.execute(insert(table), batch)  # type: ignore[arg-type]


def article_rows(rng: random.Random, now: datetime, body: str) -> Iterator[dict[str, object]]:
    """Articles 2..500 (the sample is the first), published over two years."""
    for i in range(2, ARTICLES_COUNT + 1):
        published = now - TWO_YEARS * (i / ARTICLES_COUNT) - timedelta(hours=rng.randrange(24))
        title = f"{rng.choice(TOPICS)} ({i})"
        yield {
            "guid": f"https://example.org/news/{i}",
            "fingerprint": f"sha256:{i:064x}",
            "url": f"https://example.org/news/{i}",
            "title": title,
            "author": f"{rng.choice(FIRST_NAMES).title()} {rng.choice(LAST_NAMES).title()}",
            "published_at": published,
            "summary": f"{title}: what happened, and what it means for our readers.",
            "body_html": body,
            "source": "bench",
            "ingested_at": published + timedelta(minutes=30),
        }


def seed_issues(engine: Engine, settings: Settings) -> list[int]:
    """200 sent article issues, newest articles first: the sample's rendered by the real
    renderer, the others its html and text with their own title (rendering each would
    take a minute). Returns the issue ids, newest first."""
    with engine.connect() as connection:
        query = select(ARTICLES.c.id, ARTICLES.c.title, ARTICLES.c.published_at)
        articles = connection.execute(query.order_by(ARTICLES.c.published_at.desc())).all()
    sample = next(a for a in articles if a.id == 1)
    with engine.connect() as connection:
        stored = connection.execute(select(ARTICLES).where(ARTICLES.c.id == 1)).one()
    first = article_issue(engine, settings, Article(**stored._mapping))
    chosen = [a for a in articles if a.id != 1][: ISSUES_COUNT - 1]
    rows = []
    for article in chosen:
        sent = article.published_at + timedelta(hours=2)
        rows.append(
            {
                "kind": "article",
                "key": f"article:{article.id}",
                "subject": article.title,
                "preheader": f"{article.title}: what happened.",
                "article_ids": str(article.id),
                "html": first.html.replace(sample.title, article.title),
                "text": first.text.replace(sample.title, article.title),
                "status": IssueStatus.SENT,
                "created_at": article.published_at + timedelta(hours=1),
                "sent_at": sent,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(ISSUES), rows)
        connection.execute(
            update(ISSUES)
            .where(ISSUES.c.id == first.id)
            .values(status=IssueStatus.SENT, sent_at=utcnow() - timedelta(days=1))
        )
        ids = select(ISSUES.c.id).order_by(ISSUES.c.sent_at.desc())
        return [int(row.id) for row in connection.execute(ids)]


DEFERRED_REPLY = "451 4.7.1 Greylisted, please try again later"
FAILED_REPLY = "550 5.1.1 <reader@example.org>: Recipient address rejected: User unknown"


def delivery_rows(
    rng: random.Random, issue_id: int, readers: list[int], sent_at: datetime
) -> Iterator[dict[str, object]]:
    """Mostly sent; about 1 in 100 deferred with its next try, 1 in 100 failed with the
    server's reply (a bounce, blaming the reader)."""
    for subscriber_id in readers:
        roll = rng.random()
        row: dict[str, object] = {
            "issue_id": issue_id,
            "subscriber_id": subscriber_id,
            "status": DeliveryStatus.SENT,
            "attempts": 1,
            "first_attempt_at": sent_at,
            "next_attempt_at": None,
            "blames_reader": None,
            "message_id": f"<{issue_id}.{subscriber_id}@example.org>",
            "smtp_response": "250 2.0.0 Ok: queued",
            "sent_at": sent_at,
        }
        if roll < 0.01:
            row.update(status=DeliveryStatus.DEFERRED, attempts=2, sent_at=None)
            row.update(smtp_response=DEFERRED_REPLY, next_attempt_at=utcnow() + timedelta(hours=1))
        elif roll < 0.02:
            row.update(status=DeliveryStatus.FAILED, sent_at=None, smtp_response=FAILED_REPLY)
            row.update(blames_reader=True)
        yield row


def seed_deliveries(engine: Engine, rng: random.Random, issue_ids: list[int]) -> int:
    everyone = list(range(1, SUBSCRIBERS_COUNT + 1))
    with engine.connect() as connection:
        rows = connection.execute(select(ISSUES.c.id, ISSUES.c.sent_at)).all()
    sent: dict[int, datetime] = {row.id: row.sent_at for row in rows}
    total = 0
    for position, issue_id in enumerate(issue_ids):
        readers = everyone if position < BIG_ISSUES else rng.sample(everyone, SMALL_AUDIENCE)
        readers.sort()
        in_batches(engine, DELIVERIES, delivery_rows(rng, issue_id, readers, sent[issue_id]))
        total += len(readers)
    return total


def audit_rows(rng: random.Random, now: datetime) -> Iterator[dict[str, object]]:
    """A year of the desk's audit log, oldest first: mostly sign-ins, by the bench's
    editor (id 1, made after the seed) or from the command line."""
    actions = [(AuditAction.SIGNED_IN, 60), (AuditAction.SIGNED_OUT, 30),
               (AuditAction.PASSWORD_RESET, 5), (AuditAction.EDITOR_ADDED, 5)]  # fmt: skip
    for i in range(AUDIT_COUNT):
        yield {
            "at": now - timedelta(days=365) * (1 - i / AUDIT_COUNT),
            "editor_id": rng.choice([1, 1, 1, None]),
            "action": weighted(rng, actions),
            "subject": "editor 1",
            "detail": "",
        }


def seed(url: str, folder: Path) -> tuple[Seeded, Settings]:
    rng = random.Random(13)
    settings = make_settings(folder, database_url=url)
    engine = open_database(url)
    now = utcnow()
    in_batches(engine, SUBSCRIBERS, subscriber_rows(rng, now))
    note(f"{SUBSCRIBERS_COUNT:,} subscribers")
    sample = ingest_file(engine, settings, SAMPLE_ARTICLE, published=now - timedelta(days=2))
    in_batches(engine, ARTICLES, article_rows(rng, now, sample.article.body_html))
    note(f"{ARTICLES_COUNT:,} articles")
    issue_ids = seed_issues(engine, settings)
    deliveries = seed_deliveries(engine, rng, issue_ids)
    note(f"{len(issue_ids):,} issues, {deliveries:,} deliveries")
    in_batches(engine, AUDIT_EVENTS, audit_rows(rng, now))
    note(f"{AUDIT_COUNT:,} audit log entries")
    with engine.connect() as connection:
        key = connection.execute(select(ISSUES.c.key).where(ISSUES.c.id == issue_ids[0]))
        address = connection.execute(
            select(SUBSCRIBERS.c.email).where(SUBSCRIBERS.c.id == SUBSCRIBERS_COUNT - 7)
        ).scalar_one()
        big_slug = issue_slug(key.scalar_one())
    engine.dispose()
    # "hansen99993": a surname and number, typed as an editor would look someone up
    needle = address.split("@")[0].split(".")[-1]
    return Seeded(big_slug, issue_ids[0], needle, SUBSCRIBERS_COUNT - 7), settings


# --- the site as a user runs it -------------------------------------------------------


@contextmanager
def mailer_serve(url: str, folder: Path) -> Iterator[str]:
    """`mailer serve` in its own process on a free port; killed on the way out."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        MAILER_DATABASE_URL=url,
        MAILER_PUBLICATION_BASE_URL=base_url,
        MAILER_SECRET_KEY=TEST_SECRET_KEY,
    )
    command = [sys.executable, "-m", "mailer", "serve", "--host", HOST, "--port", str(port)]
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"mailer serve did not start:\n{(folder / 'serve.log').read_text()}"
                )
            time.sleep(0.2)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def add_editor(url: str, folder: Path, email: str, password: str) -> None:
    """The account, made as an admin would (`mailer editors add`), if the command exists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(MAILER_DATABASE_URL=url, MAILER_SECRET_KEY=TEST_SECRET_KEY)
    command = [sys.executable, "-m", "mailer", "editors", "add", email, "--admin"]
    done = subprocess.run(
        [*command, "--password-stdin"], input=password, text=True, env=env, cwd=folder,
        capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        note(f"`mailer editors add` failed ({done.returncode}): {done.stderr.strip()[-300:]}")


CSRF_FIELD = re.compile(
    r'name="(csrf[\w-]*)"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="(csrf[\w-]*)"'
)


def sign_in(client: httpx.Client, email: str, password: str) -> str:
    """'' when signed in, else why not ("not yet built" while /desk/login is 404)."""
    form = client.get("/desk/login")
    if form.status_code == 404:
        return "not yet built"
    fields = {"email": email, "password": password}
    if found := CSRF_FIELD.search(form.text):
        name, value = (found[1], found[2]) if found[1] else (found[4], found[3])
        fields[name] = value
    answer = client.post("/desk/login", data=fields, headers={"Origin": str(client.base_url)})
    desk = client.get("/desk")  # signed in: the dashboard, not a way back to the form
    if desk.status_code != 200:
        return f"sign-in refused ({answer.status_code}, then /desk {desk.status_code})"
    return ""


def timed(fetch: Callable[[], object], runs: int) -> list[float]:
    for _ in range(2):  # warm-ups: imports, caches, the database's pages
        fetch()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fetch()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summarised(label: str, times: list[float], note_: str = "") -> Timing:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Timing(label, statistics.median(ordered), p95, note_)


def time_pages(
    base_url: str, seeded: Seeded, runs: int, editor: tuple[str, str] | None
) -> list[Timing]:
    values = {"big_slug": seeded.big_slug, "big_id": seeded.big_id, "needle": seeded.needle,
              "reader_id": seeded.reader_id}  # fmt: skip
    results = []
    with httpx.Client(base_url=base_url, timeout=60, follow_redirects=False) as client:
        desk_closed = sign_in(client, *editor) if editor else "needs --editor"
        if client.get("/desk/login").status_code == 404:
            desk_closed = "not yet built"
        for page in PAGES:
            path = page.path.format(**values)
            if page.desk and desk_closed:
                results.append(Timing(page.label, note=desk_closed))
                continue
            status = client.get(path).status_code
            if status == 404 and page.desk:
                results.append(Timing(page.label, note="not yet built"))
                continue
            if status != 200:
                results.append(Timing(page.label, note=f"answered {status}"))
                continue
            results.append(summarised(page.label, timed(partial(client.get, path), runs)))
            note(f"{page.label}: {results[-1].median_ms:.1f} ms")
    return results


def time_in_process(url: str, seeded: Seeded, runs: int) -> list[Timing]:
    """The subscriber search as the desk will call it, in this process: a part of an
    address (first 50 found), and the first page of one status through list_subscribers;
    and the reports the desk's issue page and dashboard will show."""
    engine = open_database(url)
    pattern = f"%{seeded.needle}%"
    query = (
        select(SUBSCRIBERS.c.id, SUBSCRIBERS.c.email, SUBSCRIBERS.c.name, SUBSCRIBERS.c.status)
        .where(SUBSCRIBERS.c.email.ilike(pattern))
        .order_by(SUBSCRIBERS.c.id)
        .limit(50)
    )

    def search() -> None:
        with engine.connect() as connection:
            if not connection.execute(query).all():
                raise SystemExit(f"the search for {seeded.needle!r} found nobody")

    def bounced_page() -> None:
        list(islice(list_subscribers(engine, SubscriberStatus.BOUNCED), 50))

    label = f"search: address contains {seeded.needle!r} (in-process query)"
    results = [
        summarised(label, timed(search, runs)),
        summarised("list_subscribers(bounced), first 50 (in-process)", timed(bounced_page, runs)),
        # what the desk's issue page and dashboard will read, until they land
        summarised(
            "report.issue_report, issue to 100,000 (in-process)",
            timed(partial(issue_report, engine, seeded.big_id), runs),
        ),
        summarised(
            "report.list_issues(20), with counts (in-process)",
            timed(partial(list_issues, engine, 20), runs),
        ),
        summarised(
            "desk_overview.readers_over_time, 26 weeks (in-process)",
            timed(partial(readers_over_time, engine, utcnow()), runs),
        ),
    ]
    engine.dispose()
    return results


# --- output and main ------------------------------------------------------------------


def table(timings: list[Timing]) -> str:
    width = max(len(t.label) for t in timings) + 2
    lines = ["page".ljust(width) + "median ms".rjust(10) + "p95 ms".rjust(9) + "  note"]
    for t in timings:
        if t.median_ms is None or t.p95_ms is None:
            lines.append(t.label.ljust(width) + "-".rjust(10) + "-".rjust(9) + f"  {t.note}")
            continue
        flag = f"OVER {LIMIT_MS:.0f} ms" if t.p95_ms > LIMIT_MS else ""
        cells = f"{t.median_ms:10.1f}{t.p95_ms:9.1f}"
        lines.append(t.label.ljust(width) + cells + f"  {flag or t.note}".rstrip())
    return "\n".join(lines)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--postgres", default="", metavar="URL",
        help="a throwaway PostgreSQL database (emptied!) instead of a fresh SQLite file",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=20, metavar="N", help="timed fetches a page")
    parser.add_argument(
        "--editor", default="", metavar="EMAIL:PASSWORD",
        help="sign in to the desk as this editor (made with `mailer editors add` first)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.editor and ":" not in args.editor:
        parser.error("--editor takes EMAIL:PASSWORD")
    return args


def note(message: str) -> None:
    """Progress on stderr."""
    print(f"# {message}", file=sys.stderr, flush=True)


def main() -> None:
    args = arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    editor = None
    if args.editor:
        email, _, password = args.editor.partition(":")
        editor = (email, password)
    note(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start")
    with tempfile.TemporaryDirectory(prefix="bench-desk-") as tmp:
        folder = Path(tmp)
        url = empty_postgres(args.postgres) if args.postgres else f"sqlite:///{folder / 'desk.db'}"
        start = time.perf_counter()
        seeded, _ = seed(url, folder)
        seeding = time.perf_counter() - start
        note(f"seeded in {seeding:.1f} s")
        if editor is not None:
            add_editor(url, folder, editor[0], editor[1])
        with mailer_serve(url, folder) as base_url:
            timings = time_pages(base_url, seeded, args.runs, editor)
        timings += time_in_process(url, seeded, args.runs)
    note(f"load average {os.getloadavg()[0]:.2f} at the end")
    backend = "PostgreSQL" if args.postgres else "SQLite"
    seeded_what = (
        f"{SUBSCRIBERS_COUNT:,} subscribers, {ARTICLES_COUNT} articles, {ISSUES_COUNT} issues"
    )
    print(f"{backend}: {seeded_what} and their deliveries seeded in {seeding:.1f} s")
    print(f"{args.runs} timed fetches a page after 2 warm-ups")
    print(table(timings))


if __name__ == "__main__":
    main()

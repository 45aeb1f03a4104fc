"""The `mailer` command line: each command parses its input, calls the domain functions,
and prints. Domain errors (MailerError) become a message on stderr and exit status 1;
bad usage exits 2."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.progress import Progress, TextColumn
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from mailer import runs
from mailer import subscribers as subs
from mailer.articles import IngestResult, find_article, ingest_source, list_articles
from mailer.catcher import start_catcher
from mailer.db import open_database
from mailer.delivery import IssueHeld, SendReport
from mailer.digest import DigestPlan, next_digest_at, plan_digest
from mailer.errors import MailerError
from mailer.issues import (
    find_issue,
    held_issues,
    unfinished_issues,
)
from mailer.messages import preview as sample_view
from mailer.models import Article, DeliveryStatus, Issue, IssueStatus, SubscriberStatus, utcnow
from mailer.outbox import count_recipients
from mailer.render import RenderedIssue, render_article_issue, render_digest_issue
from mailer.report import issue_report, list_issues
from mailer.settings import Settings, load_settings, masked_url

app = typer.Typer(
    help="Newsletter and donation-appeal mailer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # help texts name config keys as "[section] key": rich markup would eat the brackets
    rich_markup_mode=None,
)
subscribers_app = typer.Typer(
    help="Manage subscribers.", no_args_is_help=True, rich_markup_mode=None
)
articles_app = typer.Typer(
    help="Articles that have been ingested.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(articles_app, name="articles")
dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(dkim_app, name="dkim")


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


@app.callback()
def load(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="Config file (default: config/mailer.toml or $MAILER_CONFIG)."
    ),
) -> None:
    ctx.obj = load_settings(config)


def say(message: str = "") -> None:
    typer.echo(message)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the database, or upgrade an older one in place."""
    settings = settings_of(ctx)
    open_database(settings.database.url)
    say(f"Database ready: {masked_url(settings.database.url)}")


@app.command()
def backup(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Where to write the copy, e.g. backups/mailer.db."),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
) -> None:
    """Copy the SQLite database consistently, even while a send or the site is writing."""
    from mailer.backup import backup_database

    made = backup_database(settings_of(ctx).database.url, file, force=force)
    say(f"Backed up the database to {made.path} ({made.size:,} bytes, checked).")
    say(
        "To restore it: stop mailer, delete the database's -wal and -shm files, copy the "
        "backup over the database file, and run `mailer send --resume` to finish what was "
        "being sent."
    )


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the whole pipeline on the embedded default, with a local SMTP catcher."""
    from mailer.demo import run_demo

    run_demo(settings_of(ctx), say)


@app.command()
def catcher(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(1025, help="Port to listen on."),
    maildir: Path = typer.Option(Path("var/maildir"), help="Maildir to store messages in."),
) -> None:
    """A local SMTP server that stores every message it receives and delivers nothing."""
    controller = start_catcher(maildir, host, port, on_message=_announce)
    say(f"Catching mail on {host}:{port}, storing it in {maildir}/ (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("Stopped.")
    finally:
        controller.stop()


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """The subscriber site: sign-up (it sends the confirmation emails itself, from a
    background thread), the unsubscribe pages (RFC 8058 one-click) and /healthz.
    Put it behind your web server at [publication] base_url."""
    import uvicorn

    from mailer.web import create_app

    settings = settings_of(ctx)
    web = create_app(settings, open_database(settings.database.url))
    say(f"Serving {settings.publication.name} on http://{host}:{port} (Ctrl-C to stop)")
    # The site reads X-Forwarded-For itself, from [web] trusted_proxies only; uvicorn's
    # own reading (on by default, trusting 127.0.0.1) would replace the peer before it.
    uvicorn.run(web, host=host, port=port, log_level="warning", proxy_headers=False)


def _announce(recipients: list[str], content: bytes) -> None:
    message = message_from_bytes(content, policy=policy.default)
    say(f"stored: to {', '.join(recipients)}: {message['Subject']}")


# --- subscribers -------------------------------------------------------------------


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str,
    name: str | None = typer.Option(None, help="The subscriber's name."),
    confirmed: bool = typer.Option(False, help="They have already agreed: add as active."),
    weekly: bool = typer.Option(False, help="Weekly digest instead of every article."),
) -> None:
    """Add a subscriber (pending until confirmed, unless --confirmed)."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    subscriber = subs.add_subscriber(
        engine,
        email,
        name,
        confirmed=confirmed,
        frequency="weekly" if weekly else "every",
        purge_key=settings.purge_key,
    )
    say(f"Added {subscriber.email} ({subscriber.status}).")
    if subscriber.status == SubscriberStatus.PENDING:
        say("They receive no mail until confirmed; use --confirmed if they already agreed.")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context, status: str | None = typer.Option(None, help="Only this status.")
) -> None:
    """List subscribers in the order they joined."""
    engine = open_database(settings_of(ctx).database.url)
    count = 0
    for s in subs.list_subscribers(engine, status):
        joined = s.created_at.date().isoformat() if s.created_at else ""
        say(f"{s.id:>6}  {s.status:<12} {s.frequency:<6} {joined}  {s.email}  {s.name or ''}")
        count += 1
    say(f"{count} subscriber{'s' if count != 1 else ''}")


@subscribers_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: str,
    purge: bool = typer.Option(False, help="Also erase their address and name."),
) -> None:
    """Unsubscribe an address; --purge erases their personal data."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    subs.remove_subscriber(engine, email, purge=purge, purge_key=settings.purge_key)
    address = subs.normalise_address(email)
    say(f"Erased {address}." if purge else f"Unsubscribed {address}.")


@subscribers_app.command("reactivate")
def subscribers_reactivate(ctx: typer.Context, email: str) -> None:
    """Make a bounced address active again (its mailbox works again, or it was bounced
    wrongly); its past failures no longer count."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    subscriber = subs.reactivate(engine, email)
    say(f"Reactivated {subscriber.email}: it gets the next issue.")


@subscribers_app.command("import")
def subscribers_import(ctx: typer.Context, file: Path) -> None:
    """Import a CSV file with a header row: email[,name][,status][,frequency]."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    with import_progress() as progress:
        report = subs.import_csv(engine, file, purge_key=settings.purge_key, progress=progress)
    for line, reason in report.rejected:
        typer.echo(f"line {line}: rejected: {reason}", err=True)
    for line, reason in report.skipped[:SKIPPED_SHOWN]:
        typer.echo(f"line {line}: skipped: {reason}", err=True)
    if len(report.skipped) > SKIPPED_SHOWN:  # a file imported again: its rows are all there
        more = len(report.skipped) - SKIPPED_SHOWN
        typer.echo(f"... and {plural(more, 'more row')} skipped the same way", err=True)
    if report.ignored_columns:
        say(f"Ignored columns: {', '.join(report.ignored_columns)}")
    say(
        f"Imported {report.added}; skipped {len(report.skipped)} already on the list; "
        f"rejected {len(report.rejected)}."
    )


# Skipped rows listed one by one; a rerun of a big file skips thousands.
SKIPPED_SHOWN = 50


@contextmanager
def import_progress(every: float = 5.0) -> Iterator[Callable[[subs.ImportReport], None]]:
    """The rows going in: a bar on a terminal, otherwise a plain line every few seconds."""
    if sys.stderr.isatty():
        with Progress(*Progress.get_default_columns(), transient=True) as shown:
            task = shown.add_task("Importing", total=None)

            def advance_bar(report: subs.ImportReport) -> None:
                done = report.added + len(report.skipped)
                shown.update(task, total=report.to_add, completed=done)

            yield advance_bar
        return
    last = time.monotonic()

    def advance(report: subs.ImportReport) -> None:
        nonlocal last
        done = report.added + len(report.skipped)
        if done == 0:
            typer.echo(f"Checked the file: {plural(report.to_add, 'row')} to import.", err=True)
        elif time.monotonic() - last >= every or done == report.to_add:
            last = time.monotonic()
            typer.echo(f"{done}/{report.to_add} rows: {report.added} imported", err=True)

    yield advance


@subscribers_app.command("export")
def subscribers_export(
    ctx: typer.Context, file: Path | None = typer.Argument(None, help="Default: standard output.")
) -> None:
    """Export subscribers as CSV (importable again)."""
    engine = open_database(settings_of(ctx).database.url)
    if file is None:
        subs.export_csv(engine, sys.stdout)
        return
    with file.open("w", encoding="utf-8", newline="") as out:
        count = subs.export_csv(engine, out)
    say(f"Exported {count} subscribers to {file}.")


# --- articles ------------------------------------------------------------------------


@app.command()
def ingest(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., help="A file (text, Markdown, HTML page, RSS/Atom feed) or an http(s) URL."
    ),
    title: str | None = typer.Option(None, help="The article's title."),
    url: str | None = typer.Option(None, help="The article's address on your site."),
    published: str | None = typer.Option(
        None,
        help="Publication date or time (ISO 8601); without an offset, in the publication's "
        "time zone.",
    ),
    full_text: bool | None = typer.Option(
        None,
        "--full-text/--no-full-text",
        help="For a feed of excerpts: read each entry's page for the whole article "
        "(default: [sources] fetch_full_text).",
    ),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Read a URL whole even when it is unchanged since the last ingest.",
    ),
) -> None:
    """Bring in articles: from a file, a web page, or every entry of a feed."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    when = None if published is None else _iso_time(published, settings.publication.timezone)
    # A URL asks only for what changed since the last look (ETag / Last-Modified), as the
    # scheduler's poll does, unless this ingest sets something the last one did not. The
    # validators are remembered for a read with [sources] fetch_full_text, as the poll
    # reads (no column remembers the flag), so a --[no-]full-text that differs reads whole.
    web = source.startswith(("http://", "https://"))
    other_text = full_text is not None and full_text != settings.sources.fetch_full_text
    conditional = web and not (refresh or title or url or when or other_text)
    report = ingest_source(
        engine,
        settings,
        source,
        title=title,
        url=url,
        published=when,
        full_text=full_text,
        conditional=conditional,
    )
    if report.not_modified:
        say(f"{source}: unchanged since last time; nothing changed (--refresh reads it anyway).")
        return
    for problem in report.problems:
        typer.echo(f"skipped: {problem}", err=True)
    for result in report.results:
        _ingested(result, source)
    if len(report.results) != 1 or report.problems:
        outcomes = Counter(result.outcome for result in report.results)
        say(
            f"{outcomes['new']} new, {outcomes['updated']} updated, {outcomes['unchanged']} "
            f"unchanged, {len(report.problems)} skipped."
        )


def _ingested(result: IngestResult, source: str) -> None:
    article = result.article
    say(f"Article {article.id} ({result.outcome}): {article.title}")
    for note in result.draft.notes:
        typer.echo(f"  note: {note}", err=True)
    removed = result.draft.removed
    if removed and result.outcome != "unchanged":
        say(f"  Left out as the site's boilerplate ({plural(len(removed), 'paragraph')}):")
        for paragraph in removed:
            say(f"    - {paragraph[:70]}{'…' if len(paragraph) > 70 else ''}")
    if result.draft.title_derived and result.outcome == "new":
        say(
            f"  The title was derived from the text; change it with: "
            f'mailer ingest {source} --title "..."'
        )


def _iso_time(value: str, timezone: str, option: str = "--published") -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date or time, e.g. 2026-11-27 or 2026-11-27T08:30+01:00",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.astimezone(UTC)


@articles_app.command("list")
def articles_list(ctx: typer.Context) -> None:
    """List articles, newest first."""
    engine = open_database(settings_of(ctx).database.url)
    for a in list_articles(engine):
        day = a.published_at.date().isoformat() if a.published_at else "-"
        say(f"{a.id:>5}  {day}  {a.title}")


@dkim_app.command("keygen")
def dkim_keygen(
    ctx: typer.Context,
    selector: str = typer.Option(..., help="A name for this key, e.g. mail2026."),
    domain: str | None = typer.Option(None, help="Default: the sender address's domain."),
    out: Path | None = typer.Option(None, help="Default: var/dkim/SELECTOR.pem"),
) -> None:
    """Make a DKIM key pair and print the DNS record to publish."""
    from mailer.signing import generate_key

    settings = settings_of(ctx)
    domain = domain or settings.publication.from_address.rpartition("@")[2]
    path = out or Path("var/dkim") / f"{selector}.pem"
    record = generate_key(path, selector, domain)
    say(f"Private key: {path} (keep it secret, out of git, and backed up)")
    say("Publish this DNS TXT record:")
    say(f"  {record}")
    say("Then set, in config/mailer.toml (or as MAILER_DKIM_*):")
    say(
        f'  [dkim]\n  domain = "{domain}"\n  selector = "{selector}"\n'
        f'  private_key_path = "{path.resolve()}"'
    )


# --- preview, send, status -----------------------------------------------------------


@app.command()
def preview(
    ctx: typer.Context,
    article: int | None = typer.Option(None, help="Article id."),
    latest: bool = typer.Option(False, help="The latest article."),
    digest: bool = typer.Option(False, "--digest", help="This week's digest, as it would go now."),
    out: Path | None = typer.Option(None, help="Write the HTML to this file."),
    text: bool = typer.Option(False, help="Print the plain-text part instead."),
) -> None:
    """Show the email as a reader will get it."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    if digest:
        plan = plan_digest(engine, settings.publication.timezone, utcnow())
        if not plan.articles:
            raise MailerError(f"no article is new since {_local(plan.since, settings)}: no digest")
        rendered = _digest_rendering(settings, plan)
    else:
        chosen = find_article(engine, _article_choice(article, latest))
        rendered = render_article_issue(settings, chosen)
    _show(settings, rendered, out, text)


def _digest_rendering(settings: Settings, plan: DigestPlan) -> RenderedIssue:
    return render_digest_issue(settings, plan.articles, plan.week, plan.since, plan.until)


def _show(settings: Settings, rendered: RenderedIssue, out: Path | None, text: bool) -> None:
    filled = sample_view(settings, rendered, text)
    if out is None:
        typer.echo(filled)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(filled, encoding="utf-8")
    say(f"Wrote {out} ({'text' if text else 'HTML'}): “{rendered.subject}”")


def _article_choice(article: int | None, latest: bool) -> int | None:
    if article is None and not latest:
        raise typer.BadParameter("choose an article: --article ID or --latest")
    return article


@app.command()
def send(
    ctx: typer.Context,
    article: int | None = typer.Option(None, help="Article id."),
    latest: bool = typer.Option(False, help="The latest article."),
    test_to: str | None = typer.Option(None, help="Send one test copy to this address only."),
    dry_run: bool = typer.Option(False, help="Render and count; send nothing."),
    resume: bool = typer.Option(
        False,
        help="Finish every issue started and not finished; deferred messages when due; "
        "confirmation emails the site has queued.",
    ),
    worker: bool = typer.Option(
        False,
        help="One of several senders on the same queue: waits while others hold deliveries, "
        "takes over those of a sender that died, and stops when the issue is done.",
    ),
    at: str | None = typer.Option(
        None,
        help="Send at this time instead of now (ISO 8601, e.g. 2026-12-01T07:00; without an "
        "offset, in the publication's time zone), by `mailer scheduler` or `send --resume`.",
    ),
    cancel: int | None = typer.Option(
        None, metavar="ISSUE", help="Cancel a scheduled issue that has not started."
    ),
    issue_id: int | None = typer.Option(
        None,
        "--issue",
        metavar="ISSUE",
        help="Finish this issue: one held because the relay refused it (once that is put "
        "right), or one started and not finished.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Send an article to every subscriber who gets every article."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    if cancel is not None:
        cancelled = runs.cancel_scheduled(engine, cancel)
        say(f"Cancelled issue {cancel}: “{cancelled.subject}”. Nothing of it was sent.")
        return
    if issue_id is not None:
        _resume_issue(engine, settings, issue_id, yes)
        return
    if (resume or worker) and article is None and not latest:
        _finish_started(engine, settings, worker)
        return
    chosen = find_article(engine, _article_choice(article, latest))
    if at is not None:
        _schedule(engine, settings, chosen, _iso_time(at, settings.publication.timezone, "--at"))
        return
    if test_to is not None:
        copy = runs.send_test_copy(settings, chosen, test_to)
        say(f"Test copy sent to {copy.address} ({copy.reply}). It is not recorded as a delivery.")
        return
    if dry_run:
        dry = runs.dry_run(engine, settings, chosen)
        say(f"Dry run: “{dry.subject}” would go to {plural(dry.recipients, 'subscriber')}.")
        say("Nothing was sent.")
        return
    prepared = runs.article_send(engine, settings, chosen, worker=worker)
    issue, pending = prepared.issue, prepared.pending
    say(f"Issue {issue.id}: “{issue.subject}”")
    if pending == 0 and not worker:
        runs.send_article(engine, settings, issue)  # settles rows of readers who left
        if prepared.readers == 0:
            say("Nothing to send: no active subscriber gets every article.")
        else:
            say("Nothing to send: every subscriber has had it (see `mailer status`).")
        return
    say(
        f"To send: {plural(pending, 'subscriber')}, from {settings.publication.from_address} "
        f"via {settings.smtp.host}:{settings.smtp.port}."
    )
    _confirm(yes)
    again = f"mailer send --article {chosen.id}"
    with sending(again, pending, bar=not worker) as progress:
        run = runs.send_article(engine, settings, issue, progress, worker=worker)
    print_report(run.report, again, run.next_attempt)
    if run.held_elsewhere:
        say(
            f"{plural(run.held_elsewhere, 'delivery', 'deliveries')} held by another send (or "
            f"one that stopped) until {run.held_until:%H:%M:%S} UTC; run again after that if "
            "they are still open."
        )


def _schedule(engine: Engine, settings: Settings, article: Article, when: datetime) -> None:
    if when <= utcnow():
        raise MailerError(
            f"--at {_local(when, settings)} is in the past; leave --at out to send now"
        )
    issue = runs.schedule_article(engine, settings, article, when)
    say(f"Issue {issue.id}: “{issue.subject}” is scheduled for {_local(when, settings)}.")
    say(
        "`mailer scheduler` sends it then (or `mailer send --resume` from cron), showing the "
        f"article as it is at that time. Cancel it with: mailer send --cancel {issue.id}"
    )


def _local(when: datetime, settings: Settings) -> str:
    zone = ZoneInfo(settings.publication.timezone)
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _finish_started(engine: Engine, settings: Settings, worker: bool) -> None:
    """--resume / --worker without an article: scheduled issues now due, then every
    issue being sent."""
    again = "mailer send --resume"
    if not worker:
        _send_transactional(engine, settings)
        for issue, report in runs.start_due_issues(engine, settings, utcnow()):
            say(f"Issue {issue.id}: “{issue.subject}” (scheduled) started.")
            print_report(report, again)
    issues = unfinished_issues(engine)
    if not issues:
        say("Nothing to resume: no issue is being sent.")
    for held in held_issues(engine):
        say(
            f"Issue {held.id}: “{held.subject}” is held, not resumed by itself: the relay "
            f"refused it ({held.held_reason}). Once that is put right: "
            f"mailer send --issue {held.id}"
        )
    held_now = 0
    for issue in issues:
        open_rows = runs.open_deliveries(engine, settings, issue)
        rows = plural(open_rows, "delivery", "deliveries")
        say(f"Issue {issue.id}: “{issue.subject}”: {rows} open.")
        try:
            with sending(again, open_rows, bar=not worker) as progress:
                run = runs.resume(engine, settings, issue, progress, worker=worker)
        except IssueHeld as held:  # it waits for an editor; the other issues go on
            typer.echo(f"error: {held}", err=True)
            held_now += 1
            continue
        _print_resumed(run, again)
    if held_now:
        raise typer.Exit(1)


def _print_resumed(run: runs.IssueRun, again: str) -> None:
    if run.outcome == runs.Outcome.BUSY:
        rows = plural(run.held_elsewhere, "delivery", "deliveries")
        say(f"Another send is at work on it ({rows} held until {run.held_until:%H:%M:%S} UTC).")
    else:
        print_report(run.report, again, run.next_attempt)


def _send_transactional(engine: Engine, settings: Settings) -> None:
    """Confirmation links the site queued and has not sent yet (for a site run without
    the scheduler, from cron)."""
    from mailer.transactional import send_queued

    counts = send_queued(engine, settings)
    if counts:
        done = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        say(f"Confirmation links: {done}.")


def _resume_issue(engine: Engine, settings: Settings, issue_id: int, yes: bool) -> None:
    """--issue: an editor finishes one issue, a held one included."""
    issue = runs.resumable_issue(engine, issue_id)
    open_rows = runs.open_deliveries(engine, settings, issue)
    say(f"Issue {issue.id}: “{issue.subject}”: {plural(open_rows, 'delivery', 'deliveries')} open.")
    if issue.status == IssueStatus.HELD:
        say(f"It was held: the relay refused it ({issue.held_reason}).")
        say("The readers still queued get it as the article is now (edit it before this).")
        _confirm(yes)
    again = f"mailer send --issue {issue_id}"
    with sending(again, open_rows) as progress:
        run = runs.resume_issue(engine, settings, issue, progress)
    print_report(run.report, again, run.next_attempt)


@contextmanager
def sending(again: str, total: int, bar: bool = True) -> Iterator[Callable[[str], None]]:
    """The progress of a send; Ctrl-C stops it with what to run to go on, and a relay
    that refuses the issue has what was sent reported before the error."""
    try:
        with progress_reporter(total, bar=bar) as progress:
            yield progress
    except KeyboardInterrupt:
        typer.echo(f"Stopped. What was not sent stays queued; resume with: {again}", err=True)
        sys.exit(130)
    except IssueHeld as held:
        print_report(held.report, again)
        raise


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def _confirm(yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MailerError("not sending without confirmation; add --yes to send from a script")
    typer.confirm("Send now?", abort=True)


@contextmanager
def progress_reporter(
    total: int, every: float = 5.0, bar: bool = True
) -> Iterator[Callable[[str], None]]:
    """A progress bar with counts, rate and time left on a terminal; otherwise (or for a
    worker, whose output goes to a log) a plain line every few seconds."""
    counts: Counter[str] = Counter()
    started = time.monotonic()
    if bar and sys.stderr.isatty():
        columns = [*Progress.get_default_columns(), TextColumn("{task.fields[summary]}")]
        with Progress(*columns, transient=True) as shown:
            task = shown.add_task("Sending", total=total, summary="")

            def advance_bar(status: str) -> None:
                counts[status] += 1
                shown.update(task, advance=1, summary=_summary(counts, started))

            yield advance_bar
        return
    last = started

    def advance(status: str) -> None:
        nonlocal last
        counts[status] += 1
        if time.monotonic() - last >= every:
            last = time.monotonic()
            done = sum(counts.values())
            typer.echo(f"{done}/{total} handled: {_summary(counts, started)}", err=True)

    yield advance


def _summary(counts: Counter[str], started: float) -> str:
    rate = counts[DeliveryStatus.SENT] / max(time.monotonic() - started, 1e-6)
    return (
        f"{counts[DeliveryStatus.SENT]} sent, {counts[DeliveryStatus.FAILED]} failed, "
        f"{counts[DeliveryStatus.DEFERRED]} deferred, {rate:.0f}/s"
    )


def print_report(report: SendReport, again: str, next_attempt: datetime | None = None) -> None:
    c = report.counts
    say(
        f"Sent {c.get(DeliveryStatus.SENT, 0)}, deferred {c.get(DeliveryStatus.DEFERRED, 0)}, "
        f"failed {c.get(DeliveryStatus.FAILED, 0)}, skipped {c.get(DeliveryStatus.SKIPPED, 0)}."
    )
    if report.bounced:
        say(f"{plural(report.bounced, 'address', 'addresses')} refused as unknown: marked bounced.")
    if next_attempt is not None:
        say(
            f"Deferred messages are due again from {next_attempt:%Y-%m-%d %H:%M} UTC: "
            f"`mailer send --resume` then retries them (`{again}` retries them at once)."
        )


@app.command()
def digest(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None,
        help="Start from this long ago (7d, 36h, 2w) or this date (ISO 8601), instead of "
        "where the previous digest ended (the first one: the last 7 days).",
    ),
    send: bool = typer.Option(False, "--send", help="Send it (else show what it would hold)."),
    out: Path | None = typer.Option(None, help="Also write its HTML to this file."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """This week's digest: every article since the previous one, to every subscriber who
    gets it. One per ISO week however often it is run, so it can go in cron."""
    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    now = utcnow()
    start = None if since is None else _since(since, now, settings.publication.timezone)
    plan = plan_digest(engine, settings.publication.timezone, now, start)
    issue = find_issue(engine, plan.key)
    if issue is not None and issue.status in IssueStatus.STARTED:
        _digest_started(engine, settings, issue, plan, send, yes)
        return
    if not plan.articles:
        say(f"No digest for {plan.week}: no article is new since {_local(plan.since, settings)}.")
        return
    say(
        f"Digest for {plan.week}: {plural(len(plan.articles), 'article')} since "
        f"{_local(plan.since, settings)}, newest first:"
    )
    for article in plan.articles:
        day = _local(article.published_at, settings)[:10] if article.published_at else "-"
        say(f"  {article.id:>5}  {day}  {article.title}")
    if out is not None:
        _show(settings, _digest_rendering(settings, plan), out, text=False)
    readers = count_recipients(engine, "digest")
    if not send:
        say(f"It would go to {plural(readers, 'subscriber')}. Send it with: mailer digest --send")
        return
    say(f"To send: {plural(readers, 'subscriber')}, via {settings.smtp.host}:{settings.smtp.port}.")
    _confirm(yes)
    _send_digest(engine, settings, now, start, readers)


def _digest_started(
    engine: Engine, settings: Settings, issue: Issue, plan: DigestPlan, send: bool, yes: bool
) -> None:
    """This week's digest exists: sent already, or to be finished."""
    if issue.status == IssueStatus.SENT:
        sent = _local(issue.sent_at, settings) if issue.sent_at else "already"
        say(f"The digest for {plan.week} went out ({sent}): issue {issue.id}. One a week.")
        return
    open_rows = runs.open_deliveries(engine, settings, issue)
    if issue.status == IssueStatus.HELD:
        say(
            f"The digest for {plan.week} (issue {issue.id}) is held, {open_rows} open: the relay "
            f"refused it ({issue.held_reason}). Once that is put right: "
            f"mailer send --issue {issue.id}"
        )
        return
    say(f"The digest for {plan.week} (issue {issue.id}) is being sent: {open_rows} open.")
    if not send:
        say("Finish it with: mailer digest --send")
        return
    _confirm(yes)
    _send_digest(engine, settings, utcnow(), None, open_rows)


def _send_digest(
    engine: Engine, settings: Settings, now: datetime, since: datetime | None, total: int
) -> None:
    try:
        with progress_reporter(total) as progress:
            run = runs.send_digest(
                engine, settings, now, since=since, progress=progress, by_hand=True
            )
    except KeyboardInterrupt:
        typer.echo(
            "Stopped. What was not sent stays queued; finish with: mailer digest --send", err=True
        )
        sys.exit(130)
    if run.report is None or run.issue is None:  # another run got there first
        say(f"Nothing to send: {run.outcome}.")
        return
    say(f"Issue {run.issue.id}: “{run.issue.subject}”")
    print_report(run.report, "mailer digest --send")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _since(value: str, now: datetime, timezone: str) -> datetime:
    """--since: an age (7d, 36h, 2w, 90m) or an ISO date or time."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        return _iso_time(value, timezone, "--since")
    return now - timedelta(**{_UNITS[match[2]]: float(match[1])})


@app.command()
def scheduler(ctx: typer.Context) -> None:
    """The scheduled service: the weekly digest at [schedule] digest_cron, issues
    scheduled with `send --at`, retries when due, and new articles from
    [schedule] watch_dir. Logs one line per event; SIGTERM or Ctrl-C stops it cleanly."""
    from mailer.events import log_to_stdout
    from mailer.scheduler import run_service

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    log_to_stdout(settings.publication.timezone)
    run_service(settings, engine)


@app.command()
def status(
    ctx: typer.Context, issue: int | None = typer.Argument(None, help="One issue in detail.")
) -> None:
    """Deliveries per state for each issue, what is scheduled, and the errors."""
    engine = open_database(settings_of(ctx).database.url)
    settings = settings_of(ctx)
    if issue is None:
        reports = list_issues(engine)
        if not reports:
            say("No issues yet.")
        for r in reports:
            counts = ", ".join(f"{k} {v}" for k, v in r.counts.items() if v) or "nothing queued"
            if r.issue.status == IssueStatus.SCHEDULED and r.issue.scheduled_at is not None:
                counts = f"scheduled for {_local(r.issue.scheduled_at, settings)}"
            if r.issue.status == IssueStatus.HELD:
                counts += f"\n      held: the relay refused it: {r.issue.held_reason}"
            say(f"{r.issue.id:>4}  {r.issue.status:<9} {r.issue.subject}\n      {counts}")
        cron = settings.schedule.digest_cron
        upcoming = next_digest_at(cron, settings.publication.timezone, utcnow())
        if upcoming is not None:
            say(f"Next weekly digest: {_local(upcoming, settings)} (`mailer scheduler`, {cron!r})")
        return
    report = issue_report(engine, issue)
    say(f"Issue {issue}: “{report.issue.subject}” ({report.issue.status})")
    if report.issue.status == IssueStatus.HELD:
        say(
            f"  held: the relay refused the message itself, not a reader: "
            f"{report.issue.held_reason}\n  What is queued waits, counting against nobody. "
            f"Put right what the reply says (or ask your provider), then: "
            f"mailer send --issue {issue}"
        )
    for state, count in report.counts.items():
        say(f"  {state:<9} {count}")
    if report.rate is not None:
        say(f"  rate      {report.rate:.1f} messages/s")
    for p in report.problems:
        retry = (
            f", next attempt {p.next_attempt_at:%Y-%m-%d %H:%M} UTC" if p.next_attempt_at else ""
        )
        say(f"  {p.status} x{p.count} (e.g. {p.example}){retry}: {p.reply}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # before or after a send: nothing is left half-done
        typer.echo("Stopped.", err=True)
        sys.exit(130)
    except MailerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except DBAPIError as exc:  # locked, unreachable or not a mailer database
        typer.echo(f"error: the database said: {exc.orig}", err=True)
        sys.exit(1)
    except OSError as exc:  # a file or folder the user named cannot be read or written
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)

"""Articles in and out: `mailer ingest`, `mailer articles list`, and `mailer preview`,
the email as a reader will get it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import iso_time, local, plural, say
from mailer.errors import MailerError

if TYPE_CHECKING:
    from mailer.articles import IngestResult
    from mailer.digest import DigestPlan
    from mailer.render import RenderedIssue
    from mailer.settings import Settings


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
    from mailer.articles import ingest_source
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    when = None if published is None else iso_time(published, settings.publication.timezone)
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


def articles_list(ctx: typer.Context) -> None:
    """List articles, newest first."""
    from mailer.articles import list_articles
    from mailer.db import open_database

    engine = open_database(settings_of(ctx).database.url)
    for a in list_articles(engine):
        day = a.published_at.date().isoformat() if a.published_at else "-"
        say(f"{a.id:>5}  {day}  {a.title}")


LANGUAGE_OPTION = typer.Option(
    None, help="The edition of readers of this language, one of [publication] languages."
)


def preview(
    ctx: typer.Context,
    article: int | None = typer.Option(None, help="Article id."),
    latest: bool = typer.Option(False, help="The latest article."),
    digest: bool = typer.Option(False, "--digest", help="This week's digest, as it would go now."),
    out: Path | None = typer.Option(None, help="Write the HTML to this file."),
    text: bool = typer.Option(False, help="Print the plain-text part instead."),
    language: str | None = LANGUAGE_OPTION,
) -> None:
    """Show the email as a reader will get it (in their language's edition)."""
    from mailer.articles import find_article
    from mailer.db import open_database
    from mailer.digest import plan_digest
    from mailer.models import utcnow
    from mailer.render import render_article_issue

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    language = language_choice(settings, language)
    if digest:
        plan = plan_digest(engine, settings.publication.timezone, utcnow())
        if not plan.articles:
            raise MailerError(f"no article is new since {local(plan.since, settings)}: no digest")
        rendered = digest_rendering(settings, plan, language)
    else:
        chosen = find_article(engine, article_choice(article, latest))
        rendered = render_article_issue(settings, chosen, language=language)
    show(settings, rendered, out, text)


def digest_rendering(
    settings: Settings, plan: DigestPlan, language: str | None = None
) -> RenderedIssue:
    from mailer.render import render_digest_issue

    return render_digest_issue(
        settings, plan.articles, plan.week, plan.since, plan.until, language=language
    )


def language_choice(settings: Settings, language: str | None) -> str | None:
    """The publication's spelling of a --language given (None: the publication's own)."""
    if language is None:
        return None
    from mailer.i18n import supported

    offered = settings.publication.languages
    found = supported(language, offered)
    if found is None:
        raise typer.BadParameter(
            f"{language!r} is not one of the publication's languages ({', '.join(offered)}); "
            "add it to [publication] languages first",
            param_hint="--language",
        )
    return found


def show(settings: Settings, rendered: RenderedIssue, out: Path | None, text: bool) -> None:
    from mailer.messages import preview as sample_view

    filled = sample_view(settings, rendered, text)
    if out is None:
        typer.echo(filled)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(filled, encoding="utf-8")
    say(f"Wrote {out} ({'text' if text else 'HTML'}): “{rendered.subject}”")


def article_choice(article: int | None, latest: bool) -> int | None:
    if article is None and not latest:
        raise typer.BadParameter("choose an article: --article ID or --latest")
    return article

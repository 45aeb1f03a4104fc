"""Issues: an article, or a week of them, becomes one Issue row, rendered once.

An issue is keyed ("article:<id>", "digest:<ISO week>"), so asking for it again returns
the same row; once anything has been queued its content is frozen, so every reader gets
the same email. An article's issue can be scheduled for a time, and cancelled until it
starts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, update
from sqlalchemy import select as select_core
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mailer.clicks import add_links, counted_links, store_links
from mailer.db import insert_new, session_scope
from mailer.digest import DigestPlan
from mailer.editions import Edition, EditionPlan, audience, edition_by_key, needed_editions
from mailer.errors import MailerError
from mailer.goal import Goal, current_goal
from mailer.models import (
    ISSUE_VARIANTS,
    ISSUES,
    SUBSCRIBERS,
    Article,
    Issue,
    IssueStatus,
    IssueVariant,
)
from mailer.render import InlineImage, RenderedIssue, render_article_issue, render_digest_issue
from mailer.settings import Settings
from mailer.subscribers import recipients_filter

# Issues whose content may still change: rendered again whenever they are asked for.
OPEN_STATUSES = (IssueStatus.DRAFT, IssueStatus.SCHEDULED, IssueStatus.CANCELLED)


def find_issue(engine: Engine, key: str) -> Issue | None:
    with session_scope(engine) as session:
        return session.exec(select(Issue).where(Issue.key == key)).first()


@dataclass(frozen=True)
class PublicIssue:
    """An issue as the public archive lists it (its content stays in the row)."""

    key: str
    subject: str
    sent_at: datetime | None  # None while it is still going out (or held)


def sent_issues(engine: Engine, limit: int) -> list[PublicIssue]:
    """The latest `limit` issues anyone may read online (those that started going out),
    newest first: any still going out, then the sent ones by when they finished."""
    query = (
        select(Issue.key, Issue.subject, Issue.sent_at)
        .where(col(Issue.status).in_(IssueStatus.STARTED))
        .order_by(col(Issue.sent_at).desc().nulls_first(), col(Issue.id).desc())
        .limit(limit)
    )
    with session_scope(engine) as session:
        return [PublicIssue(*row) for row in session.exec(query).all()]


def unfinished_issues(engine: Engine) -> list[Issue]:
    """Issues queued and not yet sent to everyone (interrupted, or deferrals pending)."""
    with session_scope(engine) as session:
        query = select(Issue).where(Issue.status == IssueStatus.SENDING).order_by(col(Issue.id))
        return list(session.exec(query).all())


def held_issues(engine: Engine) -> list[Issue]:
    """Issues the relay refused: they wait for an editor (`mailer send --issue`)."""
    with session_scope(engine) as session:
        query = select(Issue).where(Issue.status == IssueStatus.HELD).order_by(col(Issue.id))
        return list(session.exec(query).all())


def article_issue(engine: Engine, settings: Settings, article: Article) -> Issue:
    """The issue for this article: created and rendered on first use; re-rendered until
    it is queued (the editor may have fixed the article); frozen once queued. A subject
    or preheader an editor typed at the desk stays, however often it is rendered."""
    key = f"article:{article.id}"
    fields: dict[str, object] = {"kind": "article", "article_ids": str(article.id)}
    found = find_issue(engine, key)
    edits = (found.edited_subject, found.edited_preheader) if found else (None, None)

    def render() -> RenderedIssue:
        return render_article_issue(settings, article, *edits, goal=issue_goal(engine, settings))

    return _keyed_issue(engine, key, render, fields)


def digest_issue(engine: Engine, settings: Settings, plan: DigestPlan) -> Issue:
    """This week's digest issue, built from the plan unless it has been queued already
    (then it is the digest as it went out, however often this is asked for)."""
    if not plan.articles:
        raise MailerError(f"the digest for {plan.week} would hold no article")
    fields = {
        "kind": "digest",
        "article_ids": ",".join(str(article.id) for article in plan.articles),
        "period_start": plan.since,
        "period_end": plan.until,
    }

    def render() -> RenderedIssue:
        articles, week, goal = plan.articles, plan.week, issue_goal(engine, settings)
        return render_digest_issue(settings, articles, week, plan.since, plan.until, goal)

    return _keyed_issue(engine, plan.key, render, fields)


def issue_goal(engine: Engine, settings: Settings) -> Goal | None:
    """The appeal's goal as the gifts stand now (None: no goal), for an issue or a preview
    being rendered: an issue shows it as it was when rendered."""
    return current_goal(engine, settings.donation, settings.publication.timezone)


def _keyed_issue(
    engine: Engine, key: str, render: Callable[[], RenderedIssue], fields: dict[str, object]
) -> Issue:
    """The issue with this key as stored, (re-)rendered first while it is open. The
    update applies only while the issue is still open, so a send that has started (in
    another process, a moment ago) keeps the content it was queued with."""
    issue = find_issue(engine, key)
    if issue is not None and issue.status not in OPEN_STATUSES:
        return issue
    rendered = render()
    content = {**fields, **_content(rendered)}
    if issue is None:
        try:
            with session_scope(engine) as session:
                made = Issue(key=key, **content)  # type: ignore[arg-type]
                session.add(made)
                session.flush()
                store_links(session.connection(), made.id or 0, rendered.links)
        except IntegrityError:
            pass  # another process created it first: theirs is as good
    else:
        _update_open(engine, issue.id or 0, content, rendered, OPEN_STATUSES)
    stored = find_issue(engine, key)
    assert stored is not None
    return stored


def refresh_held(engine: Engine, settings: Settings, issue: Issue) -> Issue:
    """A held issue rendered again from its articles as they are now, for the readers
    still queued: the relay refused the message itself, and the editor may have fixed
    what it objected to. Any other issue is returned as it is."""
    if issue.status != IssueStatus.HELD:
        return issue
    articles = issue_articles(engine, issue)
    if not articles:
        return issue  # the articles are gone: it goes out as it was
    if issue.kind == "digest" and issue.period_start and issue.period_end:
        week = issue.key.removeprefix("digest:")
        since, until = issue.period_start, issue.period_end
        rendered = render_digest_issue(
            settings, articles, week, since, until, issue_goal(engine, settings)
        )
    else:
        edits = issue.edited_subject, issue.edited_preheader
        rendered = render_article_issue(settings, articles[0], *edits, issue_goal(engine, settings))
    _update_open(engine, issue.id or 0, _content(rendered), rendered, (IssueStatus.HELD,))
    _render_variants(engine, settings, issue, articles, set(_stored_variants(engine, issue)))
    return find_issue_by_id(engine, issue.id or 0)


def issue_articles(engine: Engine, issue: Issue) -> list[Article]:
    """The issue's articles still stored, in the order it shows them."""
    with session_scope(engine) as session:
        ids = issue.article_id_list
        found = {a.id: a for a in session.exec(select(Article).where(col(Article.id).in_(ids)))}
    return [found[i] for i in ids if i in found]


# --- editions: the issue in its readers' languages (editions.py) ----------------------


def prepare_editions(engine: Engine, settings: Settings, issue: Issue) -> EditionPlan:
    """The issue's editions for its readers as they are now, rendered and stored before
    it is queued: all of them again while the issue is open, only those it lacks once
    it has started (a reader of a new language since), the others frozen."""
    publication = settings.publication
    articles, stored = issue_articles(engine, issue), _stored_variants(engine, issue)
    if not articles:  # the articles are gone: the editions it has go out as they are
        return EditionPlan(publication, (), {publication.language: None, **stored})
    who = audience(publication, articles)
    query = select_core(SUBSCRIBERS.c.languages).distinct().where(recipients_filter(issue.kind))
    with engine.connect() as connection:
        values = connection.execute(query if who is None else query.where(who)).scalars().all()
    wanted = set(needed_editions(values, publication, articles)) - {publication.language}
    if issue.status not in OPEN_STATUSES:
        wanted -= set(stored)
    if wanted:
        _render_variants(engine, settings, issue, articles, wanted)
        stored = _stored_variants(engine, issue)
    variants = {publication.language: None, **stored}
    return EditionPlan(publication, tuple(articles), variants, who)


def _stored_variants(engine: Engine, issue: Issue) -> dict[str, int | None]:
    v = ISSUE_VARIANTS.c
    with engine.connect() as connection:
        rows = connection.execute(select_core(v.key, v.id).where(v.issue_id == issue.id))
        return {key: variant_id for key, variant_id in rows}


def _render_variants(
    engine: Engine, settings: Settings, issue: Issue, articles: list[Article], keys: set[str]
) -> None:
    """Render and store these editions of the issue: new ones added, stored ones
    rendered again only while the issue is open or held (never once it goes out)."""
    publication, goal = settings.publication, issue_goal(engine, settings)
    for key in sorted(keys):
        edition = edition_by_key(key, publication, articles)
        shown = [a for a in articles if (a.id or 0) in edition.article_ids]
        counted = counted_links(engine, issue.id or 0)
        rendered = _render_edition(settings, issue, edition, shown, goal, counted)
        _store_variant(engine, issue.id or 0, edition, rendered)


def _render_edition(
    settings: Settings,
    issue: Issue,
    edition: Edition,
    shown: list[Article],
    goal: Goal | None,
    counted: dict[str, str],
) -> RenderedIssue:
    """One edition: in its language, without the desk's subject and preheader (those
    are the publication's edition's)."""
    if issue.kind == "digest" and issue.period_start and issue.period_end:
        week = issue.key.removeprefix("digest:")
        since, until = issue.period_start, issue.period_end
        return render_digest_issue(
            settings, shown, week, since, until, goal, edition.language, counted
        )
    return render_article_issue(
        settings, shown[0], goal=goal, language=edition.language, counted=counted
    )


_CHANGEABLE = (*OPEN_STATUSES, IssueStatus.HELD)


def _store_variant(
    engine: Engine, issue_id: int, edition: Edition, rendered: RenderedIssue
) -> None:
    content = _content(rendered)
    del content["reference"]  # the issue's, the same in every edition
    v = ISSUE_VARIANTS.c
    values = {**content, "language": edition.language, "article_ids": ",".join(
        str(i) for i in edition.article_ids)}  # fmt: skip
    changeable = select_core(ISSUES.c.id).where(
        ISSUES.c.id == issue_id, ISSUES.c.status.in_(_CHANGEABLE)
    )
    with engine.begin() as connection:
        new = insert_new(engine, ISSUE_VARIANTS).values(
            issue_id=issue_id, key=edition.key, **values
        )
        added = connection.execute(new.on_conflict_do_nothing()).rowcount
        if not added:
            connection.execute(
                update(ISSUE_VARIANTS)
                .where(v.issue_id == issue_id, v.key == edition.key, changeable.exists())
                .values(**values)
            )
        add_links(connection, issue_id, rendered.links)


def find_variant(engine: Engine, variant_id: int) -> IssueVariant:
    with session_scope(engine) as session:
        variant = session.get(IssueVariant, variant_id)
    if variant is None:
        raise MailerError(f"no edition with id {variant_id}: was the database changed by hand?")
    return variant


def variants_of(engine: Engine, issue_id: int) -> dict[int, IssueVariant]:
    """The issue's stored editions other than its own, by id."""
    with session_scope(engine) as session:
        query = select(IssueVariant).where(IssueVariant.issue_id == issue_id)
        return {variant.id or 0: variant for variant in session.exec(query).all()}


def _content(rendered: RenderedIssue) -> dict[str, object]:
    """An issue's columns that rendering fills."""
    images = [
        {"name": i.name, "cid": i.cid, "png": base64.b64encode(i.png).decode("ascii")}
        for i in rendered.images
    ]
    return {
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "html": rendered.html,
        "text": rendered.text,
        "reference": rendered.reference or None,
        "images": json.dumps(images),
        "thanks_html": rendered.thanks_html,
        "thanks_text": rendered.thanks_text,
    }


def _update_open(
    engine: Engine,
    issue_id: int,
    content: dict[str, object],
    rendered: RenderedIssue,
    statuses: tuple[IssueStatus, ...],
) -> None:
    """The new content (and its counted links), if the issue's status is still one of
    `statuses`: a send that started a moment ago keeps what it was queued with."""
    with engine.begin() as connection:
        changed = connection.execute(
            update(ISSUES)
            .where(ISSUES.c.id == issue_id, ISSUES.c.status.in_(statuses))
            .values(**content)
        )
        if changed.rowcount:
            store_links(connection, issue_id, rendered.links)


def edit_issue(engine: Engine, issue_id: int, subject: str | None, preheader: str | None) -> bool:
    """Keep an editor's subject and preheader for the issue (None: the article's own),
    while it is open; False once it has started (its content is frozen). The caller
    renders it again."""
    with engine.begin() as connection:
        changed = connection.execute(
            update(ISSUES)
            .where(ISSUES.c.id == issue_id, ISSUES.c.status.in_(OPEN_STATUSES))
            .values(edited_subject=subject, edited_preheader=preheader)
        )
    return changed.rowcount == 1


def schedule_issue(engine: Engine, issue: Issue, when: datetime) -> Issue:
    """Have the issue sent at `when` (by `mailer scheduler` or `mailer send --resume`)."""
    changed = _set_status(engine, issue, OPEN_STATUSES, IssueStatus.SCHEDULED, scheduled_at=when)
    if not changed:
        raise MailerError(
            f"issue {issue.id} has started already ({issue.status}); see `mailer status {issue.id}`"
        )
    issue.status, issue.scheduled_at = IssueStatus.SCHEDULED, when
    return issue


def cancel_issue(engine: Engine, issue_id: int) -> Issue:
    """Cancel a scheduled issue that has not started; MailerError otherwise."""
    issue = find_issue_by_id(engine, issue_id)
    if not _set_status(engine, issue, (IssueStatus.SCHEDULED,), IssueStatus.CANCELLED):
        issue = find_issue_by_id(engine, issue_id)
        raise MailerError(f"issue {issue_id} {_not_cancellable[IssueStatus(issue.status)]}")
    issue.status = IssueStatus.CANCELLED
    return issue


_not_cancellable = {
    IssueStatus.DRAFT: "is not scheduled: nothing to cancel",
    IssueStatus.CANCELLED: "was cancelled already",
    IssueStatus.SENDING: "has started: what is queued goes out; see `mailer status`",
    IssueStatus.HELD: "has started and is held: see `mailer status`",
    IssueStatus.SENT: "has been sent",
}


def _set_status(
    engine: Engine, issue: Issue, among: tuple[str, ...], status: str, **values: object
) -> bool:
    """Move the issue to `status` if it is still in one of `among`; one statement, so a
    cancel and the scheduler starting the issue cannot both win."""
    with engine.begin() as connection:
        changed = connection.execute(
            update(ISSUES)
            .where(ISSUES.c.id == issue.id, ISSUES.c.status.in_(among))
            .values(status=status, **values)
        )
    return changed.rowcount == 1


def find_issue_by_id(engine: Engine, issue_id: int) -> Issue:
    with session_scope(engine) as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            raise MailerError(f"no issue with id {issue_id}; see `mailer status`")
        return issue


def due_issues(engine: Engine, now: datetime) -> list[Issue]:
    """Scheduled issues whose time has come, earliest first."""
    with session_scope(engine) as session:
        query = (
            select(Issue)
            .where(Issue.status == IssueStatus.SCHEDULED, col(Issue.scheduled_at) <= now)
            .order_by(col(Issue.scheduled_at), col(Issue.id))
        )
        return list(session.exec(query).all())


def as_rendered(issue: Issue | IssueVariant, reference: str | None = None) -> RenderedIssue:
    """The issue (or one of its editions, with the issue's `reference`) as stored, ready
    to build messages from (its links are not needed)."""
    images = tuple(
        InlineImage(image["name"], image["cid"], base64.b64decode(image["png"]))
        for image in json.loads(issue.images or "[]")
    )
    return RenderedIssue(
        issue.subject,
        issue.preheader,
        issue.html,
        issue.text,
        (issue.reference if isinstance(issue, Issue) else reference) or "",
        images,
        thanks_html=issue.thanks_html or "",
        thanks_text=issue.thanks_text or "",
    )

"""Editions: which copy of an issue each reader gets. An issue is rendered once per
edition, never per reader: an edition is the readers' own language (the first they
read, `subscriber.languages`) and, for a digest with `[publication] editions =
"by-language"`, the languages they read among its articles'. With "by-language" an
article goes only to readers who read its language (`fa` matches `fa-AF`); with "all"
every article goes to everyone, in their own language's chrome.

Readers are grouped by their `languages` value (few distinct ones, however many
readers): the outbox queues each group in one statement (outbox.Outbox.enqueue)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, literal, or_, select

from mailer.i18n import primary, reader_languages, same_language, supported
from mailer.models import SUBSCRIBERS, Article
from mailer.sections import Publication
from mailer.subscribers import recipients_filter

BY_LANGUAGE = "by-language"


@dataclass(frozen=True)
class Edition:
    """One copy of an issue: in `language`, showing `article_ids` (in the issue's order)."""

    language: str  # one of [publication] languages
    article_ids: tuple[int, ...]
    key: str  # "fa-AF"; a digest showing some of its articles: "fa-AF|en,fa"


def article_language(article: Article, publication: Publication) -> str:
    """An article's language: the one stored, else the publication's."""
    return article.language or publication.language


def edition_of(
    languages: str | None, publication: Publication, articles: Sequence[Article]
) -> Edition | None:
    """The edition a reader with this `subscriber.languages` gets of an issue of these
    articles; None: none (by language, they read none of its articles' languages)."""
    read = reader_languages(languages, publication.language)
    own = supported(read[0], publication.languages) or publication.language
    shown = list(articles)
    if publication.editions == BY_LANGUAGE:
        tags = [(a, article_language(a, publication)) for a in articles]
        shown = [a for a, tag in tags if any(same_language(tag, r) for r in read)]
        if not shown:
            return None
    key = own
    if len(shown) < len(articles):
        key += "|" + ",".join(sorted({primary(article_language(a, publication)) for a in shown}))
    return Edition(own, tuple(a.id or 0 for a in shown), key)


def edition_by_key(key: str, publication: Publication, articles: Sequence[Article]) -> Edition:
    """The edition a key names (Edition.key): its language, and by language the
    articles in the languages it lists."""
    language, _, languages = key.partition("|")
    shown = articles
    if languages:
        wanted = languages.split(",")
        shown = [a for a in articles if primary(article_language(a, publication)) in wanted]
    return Edition(language, tuple(a.id or 0 for a in shown), key)


def reads(language: str, publication: Publication) -> ColumnElement[bool]:
    """Readers who read `language` (its primary language: fa matches fa-AF and fa), by
    SQL on their comma list, the same on SQLite and PostgreSQL."""
    listed = func.lower(
        literal(",") + func.coalesce(SUBSCRIBERS.c.languages, publication.language) + ","
    )
    tag = primary(language)
    return or_(listed.like(f"%,{tag},%"), listed.like(f"%,{tag}-%"))


def audience(publication: Publication, articles: Iterable[Article]) -> ColumnElement[bool] | None:
    """Who may get an issue of these articles beyond its kind's readers: by language,
    those who read one of the articles' languages; None: everyone."""
    if publication.editions != BY_LANGUAGE:
        return None
    tags = sorted({primary(article_language(a, publication)) for a in articles})
    return or_(*(reads(tag, publication) for tag in tags))


def audience_count(
    engine: Engine, kind: str, publication: Publication, articles: Iterable[Article]
) -> int:
    """Active readers who get an issue of this kind holding these articles."""
    who = audience(publication, articles)
    query = select(func.count()).select_from(SUBSCRIBERS).where(recipients_filter(kind))
    with engine.connect() as connection:
        return int(connection.execute(query if who is None else query.where(who)).scalar_one())


@dataclass(frozen=True)
class EditionPlan:
    """An issue's editions as stored, for queueing it: who may get it, and which stored
    variant each reader gets (None: the issue's own columns, the publication's)."""

    publication: Publication
    articles: tuple[Article, ...]
    variants: Mapping[str, int | None]  # Edition.key -> issue_variant.id
    audience: ColumnElement[bool] | None = field(default=None, compare=False)

    def variant_for(self, languages: str | None) -> int | None:
        """The variant for a reader with this `subscriber.languages`. One whose edition
        was not rendered (their languages changed a moment ago) gets their language's
        whole edition, else the publication's."""
        edition = edition_of(languages, self.publication, self.articles)
        if edition is None:
            return None
        if edition.key in self.variants:
            return self.variants[edition.key]
        return self.variants.get(edition.language)


def needed_editions(
    languages_values: Iterable[str | None], publication: Publication, articles: Sequence[Article]
) -> dict[str, Edition]:
    """The editions readers with these `languages` values get, by key."""
    editions = (edition_of(value, publication, articles) for value in languages_values)
    return {edition.key: edition for edition in editions if edition is not None}


def reader_groups(
    connection: Connection, plan: EditionPlan | None, eligible: ColumnElement[bool]
) -> list[tuple[int | None, ColumnElement[bool]]]:
    """The `eligible` readers in groups that get one variant each (its id, None: the
    issue's own), each group a condition on their `languages`, so one INSERT ... SELECT
    queues it; without a plan, everyone gets the issue's own."""
    if plan is None:
        return [(None, eligible)]
    if plan.audience is not None:
        eligible = and_(eligible, plan.audience)
    query = select(SUBSCRIBERS.c.languages).distinct().where(eligible)
    groups: dict[int | None, list[str | None]] = {}
    for value in connection.execute(query).scalars():
        groups.setdefault(plan.variant_for(value), []).append(value)
    return [(variant, and_(eligible, _among(values))) for variant, values in groups.items()]


def _among(values: list[str | None]) -> ColumnElement[bool]:
    column, listed = SUBSCRIBERS.c.languages, [v for v in values if v is not None]
    among = column.in_(listed)
    return or_(among, column.is_(None)) if None in values else among

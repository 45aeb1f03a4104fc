"""Editions: each reader gets an issue once, in their own language's edition, rendered
once per edition (not per reader); with editions = "by-language" only what they read."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, func, select, text

from mailer import runs
from mailer.articles import ingest_file
from mailer.cli.articles import language_choice
from mailer.demo import SAMPLE_ARTICLE
from mailer.links import issue_url
from mailer.models import DELIVERIES, ISSUE_LINKS, ISSUE_VARIANTS, Article, utcnow
from mailer.outbox import Outbox
from mailer.report import issue_report
from mailer.settings import Settings
from mailer.testing import (
    TEST_SECRET_KEY,
    RecordingHandler,
    import_readers,
    make_settings,
    run_mailer,
)

LANGUAGES = ["en", "nb", "fa-AF", "ps"]
# reader000 .. reader005, by what they read
READS = [None, "fa-AF", "fa-AF,en", "nb", "nb,en", "fa-AF,nb"]


def lang_of(received: object) -> tuple[str, str]:
    """The html element's lang and dir in a message as received."""
    message = received.message  # type: ignore[attr-defined]
    html = message.get_body(("html",)).get_content()
    found = re.search(r'<html lang="([^"]+)" dir="([a-z]+)"', html)
    assert found, html[:300]
    return found.group(1), found.group(2)


@pytest.fixture
def settings(tmp_path: Path, smtp: RecordingHandler, database_url: str) -> Settings:
    """The publication in four languages (the desk's fixture serves these too)."""
    return make_settings(tmp_path, smtp.port, database_url, publication={"languages": LANGUAGES})


def by_language(settings: Settings) -> Settings:
    return settings.replace(publication={"languages": LANGUAGES, "editions": "by-language"})


def readers(engine: Engine, directory: Path) -> list[str]:
    addresses = import_readers(engine, directory, len(READS))
    with engine.begin() as connection:
        for address, languages in zip(addresses, READS, strict=True):
            connection.execute(
                text("UPDATE subscriber SET languages = :l WHERE email = :e"),
                {"l": languages, "e": address},
            )
    return addresses


def persian(engine: Engine, settings: Settings, directory: Path, title: str) -> Article:
    source = directory / f"{title}.txt"
    source.write_text(
        "کابل – شورای شهر امروز بودجه سال آینده را تصویب کرد.\n\n"
        "اعضای شورا گفتند که بیشتر پول به مکتب‌ها و شفاخانه‌ها می‌رسد.\n"
    )
    article = ingest_file(engine, settings, source, title=title).article
    assert article.language and article.language.startswith("fa")
    return article


def variants(engine: Engine, issue_id: int) -> list[str]:
    query = select(ISSUE_VARIANTS.c.key).where(ISSUE_VARIANTS.c.issue_id == issue_id)
    with engine.connect() as connection:
        return sorted(connection.execute(query).scalars())


def test_each_reader_gets_one_message_in_their_own_language(engine, settings, smtp, tmp_path):
    """An article to a mixed list: one edition per own language (the publication's in
    the issue's row), each reader one message, its lang and dir theirs; a rerun sends
    nothing twice; status counts each edition."""
    addresses = readers(engine, tmp_path)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    issue = runs.article_send(engine, settings, article).issue
    run = runs.send_article(engine, settings, issue)
    assert run.report.sent == len(READS)
    assert variants(engine, issue.id) == ["fa-AF", "nb"]
    got = {r.rcpt_tos[0]: lang_of(r) for r in smtp.received}
    assert got == {
        addresses[0]: ("en", "ltr"),
        addresses[1]: ("fa-AF", "rtl"),
        addresses[2]: ("fa-AF", "rtl"),
        addresses[3]: ("nb", "ltr"),
        addresses[4]: ("nb", "ltr"),
        addresses[5]: ("fa-AF", "rtl"),
    }
    runs.send_article(engine, settings, issue)
    assert len(smtp.received) == len(READS)
    report = issue_report(engine, issue.id)
    assert {lang: counts["sent"] for lang, counts in report.editions.items()} == {
        None: 1, "fa-AF": 3, "nb": 2
    }  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_by_language_an_article_goes_to_its_readers_only(engine, settings, smtp, tmp_path):
    """By language, a Persian article reaches the readers who read Persian (fa matches
    fa-AF), in their own language's edition."""
    settings = by_language(settings)
    addresses = readers(engine, tmp_path)
    article = persian(engine, settings, tmp_path, "Budget")
    prepared = runs.article_send(engine, settings, article)
    assert (prepared.pending, prepared.readers) == (3, 3)
    runs.send_article(engine, settings, prepared.issue)
    got = {r.rcpt_tos[0]: lang_of(r)[0] for r in smtp.received}
    assert got == {addresses[1]: "fa-AF", addresses[2]: "fa-AF", addresses[5]: "fa-AF"}


def test_digest_by_language_one_variant_per_combination(engine, settings, smtp, tmp_path):
    """The digest by language: one issue, rendered once per combination of own language
    and languages read among its articles; each reader one digest holding only the
    articles in languages they read; a reader of none gets none."""
    settings = by_language(settings)
    addresses = readers(engine, tmp_path)
    with engine.begin() as connection:
        connection.execute(text("UPDATE subscriber SET frequency = 'weekly'"))
        connection.execute(
            text("UPDATE subscriber SET languages = 'ps' WHERE email = :e"), {"e": addresses[4]}
        )
    english = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    fa = persian(engine, settings, tmp_path, "Budget")
    now = utcnow() + timedelta(minutes=1)
    run = runs.send_digest(engine, settings, now, since=now - timedelta(days=7))
    assert run.issue is not None and run.report is not None
    assert run.report.sent == 4  # reader003 reads nb, reader004 ps: no article of theirs
    # English alone, Dari with both, Dari with the Persian alone (the issue's own row:
    # English with both, the archive's)
    assert variants(engine, run.issue.id) == ["en|en", "fa-AF", "fa-AF|fa"]
    bodies = {r.rcpt_tos[0]: r.message.get_body(("html",)).get_content() for r in smtp.received}
    assert set(bodies) == {addresses[0], addresses[1], addresses[2], addresses[5]}
    assert english.title in bodies[addresses[0]] and fa.title not in bodies[addresses[0]]
    assert fa.title in bodies[addresses[1]] and english.title not in bodies[addresses[1]]
    assert english.title in bodies[addresses[2]] and fa.title in bodies[addresses[2]]
    assert fa.title in bodies[addresses[5]] and english.title not in bodies[addresses[5]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_link_counted_leads_where_the_readers_edition_pointed(
    engine, settings, smtp, tmp_path
):
    """With every link counted, an edition's links keep the ids the issue gave the same
    addresses and get new ones for its own: a Dari reader's "read online" leads to the
    Dari page, an English reader's to the English one."""
    settings = by_language(settings).replace(tracking={"count_clicks": "all"})
    addresses = readers(engine, tmp_path)
    with engine.begin() as connection:
        connection.execute(text("UPDATE subscriber SET frequency = 'weekly'"))
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    persian(engine, settings, tmp_path, "Budget")
    now = utcnow() + timedelta(minutes=1)
    run = runs.send_digest(engine, settings, now, since=now - timedelta(days=7))
    assert run.issue is not None and run.issue.reference
    k = ISSUE_LINKS.c
    with engine.connect() as connection:
        query = select(k.link_id, k.url).where(k.issue_id == run.issue.id)
        targets = dict(connection.execute(query).all())
    counted = re.compile(rf"/r/{re.escape(run.issue.reference)}/(\w+)")
    reached = {
        r.rcpt_tos[0]: {
            targets[i] for i in counted.findall(r.message.get_body(("html",)).get_content())
        }
        for r in smtp.received
    }
    base = settings.publication.base_url
    online = {lang: issue_url(base, run.issue.key, lang) for lang in (None, "fa-AF")}
    assert online[None] in reached[addresses[0]] and online["fa-AF"] not in reached[addresses[0]]
    for dari in (addresses[1], addresses[2], addresses[5]):
        assert online["fa-AF"] in reached[dari] and online[None] not in reached[dari]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_crash_mid_send_resumes_with_each_readers_edition(engine, settings, smtp, tmp_path):
    """A sender that died holding claimed rows: the resume sends the rest, each in its
    edition, and nothing twice."""
    addresses = readers(engine, tmp_path)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    issue = runs.article_send(engine, settings, article).issue
    clock = [utcnow()]
    crashed = Outbox(engine, issue, settings.delivery, clock=lambda: clock[0])
    from mailer.issues import prepare_editions

    crashed.enqueue(editions=prepare_editions(engine, settings, issue))
    assert len(crashed.claim(limit=3)) == 3  # and then it died, its lease running
    with engine.begin() as connection:
        connection.execute(DELIVERIES.update().values(lease_until=utcnow() - timedelta(seconds=1)))
    run = runs.resume(engine, settings, issue)
    assert run.report.sent == len(READS)
    got = {r.rcpt_tos[0]: lang_of(r)[0] for r in smtp.received}
    assert [got[a] for a in addresses] == ["en", "fa-AF", "fa-AF", "nb", "nb", "fa-AF"]
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(DELIVERIES)).scalar() == 6


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_read_online_shows_the_languages_edition(engine, settings, smtp, tmp_path):
    """/issues/<slug>?lang=fa-AF shows the Dari edition of a started issue; a language
    without an edition, the publication's."""
    from mailer import links
    from mailer.read_online import online_page

    readers(engine, tmp_path)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    issue = runs.article_send(engine, settings, article).issue
    slug = links.issue_slug(issue.key)
    runs.send_article(engine, settings, issue)
    assert '<html lang="fa-AF" dir="rtl"' in (online_page(engine, settings, slug, "fa-AF") or "")
    assert '<html lang="en"' in (online_page(engine, settings, slug, "ps") or "")
    assert '<html lang="en"' in (online_page(engine, settings, slug) or "")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_desk_shows_and_tests_each_languages_edition(engine, settings, smtp, desk, tmp_path):
    """The send page shows the edition of the language chosen, and sends a test copy
    of it; the subject form is the publication's edition's. Once sent, the issue's page
    counts each edition's readers."""
    from contextlib import closing

    from deskclient import csrf_of

    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    send_page = f"/desk/articles/{article.id}/send"
    with closing(desk.signed_in()) as client:
        page = client.get(send_page, params={"lang": "fa-AF"})
        assert "the fa-AF edition" in page.text and "lang=&#34;fa-AF&#34;" in page.text
        assert 'name="subject"' not in page.text
        assert 'name="subject"' in client.get(send_page).text
        data = {"csrf": csrf_of(page), "addresses": "pat@newsroom.example", "language": "ps"}
        tested = client.post(f"{send_page}/test", data=data)
        assert "lang=ps" in tested.headers["location"]
        assert smtp.wait_for("pat@newsroom.example")
        assert lang_of(smtp.received[0]) == ("ps", "rtl")
        assert smtp.received[0].message["subject"].startswith("[Test]")
        readers(engine, tmp_path)
        digest = client.get("/desk/digest", params={"lang": "ps"}).text
        assert "the ps edition" in digest and "lang=&#34;ps&#34;" in digest
        assert '<option value="ps" selected>' in digest
        issue = runs.article_send(engine, settings, article).issue
        runs.send_article(engine, settings, issue)
        report = client.get(f"/desk/issues/{issue.id}").text
        rows = re.findall(r"<tr><td>([\w-]+)</td><td class=\"n\">(\d+)</td>", report)
        assert [row for row in rows if row[0] in LANGUAGES] == [
            ("en", "1"), ("fa-AF", "3"), ("nb", "2")
        ]  # fmt: skip
        sent_page = client.get(send_page, params={"lang": "nb"}).text
        assert "lang=&#34;nb&#34;" in sent_page
        online = client.get(f"/issues/article-{article.id}", params={"lang": "fa-AF"})
        assert '<html lang="fa-AF" dir="rtl"' in online.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_line_previews_an_edition_and_counts_each(engine, settings, smtp, tmp_path):
    """`mailer preview --language` shows that language's edition, refuses one the
    publication does not have; `mailer status ISSUE` counts each edition's readers."""
    readers(engine, tmp_path)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    issue = runs.article_send(engine, settings, article).issue
    runs.send_article(engine, settings, issue)
    env = {
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_DATABASE_URL": settings.database.url,
        "MAILER_PUBLICATION_LANGUAGES": ",".join(LANGUAGES),
    }
    shown = run_mailer(tmp_path, "preview", "--article", str(article.id), "--language", "fa", **env)
    assert shown.returncode == 0, shown.stderr
    assert '<html lang="fa-AF" dir="rtl"' in shown.stdout
    with pytest.raises(typer.BadParameter, match="'de' is not one of the publication's"):
        language_choice(settings, "de")
    status = run_mailer(tmp_path, "status", str(issue.id), **env)
    assert status.returncode == 0, status.stderr
    assert "  en        1 sent, 0 to go" in status.stdout
    assert "  fa-AF     3 sent, 0 to go" in status.stdout
    assert "  nb        2 sent, 0 to go" in status.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_held_issue_goes_out_in_every_edition_as_the_article_is_now(
    engine, settings, smtp, tmp_path
):
    """The relay refused the message itself; the editor fixes the article and resumes:
    every edition is rendered again, and each reader gets the fixed one in theirs."""
    from mailer.issues import find_issue_by_id
    from mailer.models import ARTICLES

    addresses = readers(engine, tmp_path)
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    issue = runs.article_send(engine, settings, article).issue
    smtp.refuse_data = "554 5.7.1 Message rejected as spam"
    with pytest.raises(runs.IssueHeld):
        runs.send_article(engine, settings, issue)
    with engine.begin() as connection:
        connection.execute(ARTICLES.update().values(title="Fixed: the talks in Moscow"))
    smtp.refuse_data = None
    run = runs.resume_issue(engine, settings, find_issue_by_id(engine, issue.id))
    assert run.report.sent == len(READS)
    got = {r.rcpt_tos[0]: (lang_of(r)[0], r.message["subject"]) for r in smtp.received}
    assert got[addresses[1]] == ("fa-AF", "Fixed: the talks in Moscow")
    assert got[addresses[3]] == ("nb", "Fixed: the talks in Moscow")
    assert len(got) == len(READS) == len(smtp.received)

"""Ingesting articles into the database: one article however often and however it is
ingested, the editor's title kept, and nothing but boilerplate left out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailer.articles import block_key, boilerplate, edit_article, ingest_file, list_articles
from mailer.articles import put_back_block as put_back
from mailer.demo import SAMPLE_ARTICLE
from mailer.editors import record
from mailer.models import AuditAction
from mailer.sources import read_article
from mailer.sources.blocks import LeftOut, body_blocks, left_out_of, take_out
from mailer.sources.blocks import put_back as put_back_into

SUBHEADING = "Lavrov’s Dual-Message: Praise for Taliban, a Warning to the West"
URL = "https://dawatmedia.example/2026/moscow-format"


def test_adding_a_title_and_url_later_updates_the_same_article(engine, settings):
    first = ingest_file(engine, settings, SAMPLE_ARTICLE)
    second = ingest_file(engine, settings, SAMPLE_ARTICLE, title="Moscow talks", url=URL)
    assert second.outcome == "updated" and second.article.id == first.article.id
    again = ingest_file(engine, settings, SAMPLE_ARTICLE)  # without the url this time
    assert again.article.id == first.article.id and again.outcome == "unchanged"
    [article] = list_articles(engine)
    assert (article.title, article.url, article.guid) == ("Moscow talks", URL, URL)


def test_reingesting_keeps_the_editors_title_and_the_body_around_it(engine, settings):
    ingest_file(engine, settings, SAMPLE_ARTICLE, title="Moscow talks")
    result = ingest_file(engine, settings, SAMPLE_ARTICLE)
    assert result.outcome == "unchanged"
    assert result.article.title == "Moscow talks"
    assert f"<h2>{SUBHEADING}</h2>" in result.article.body_html


def test_a_derived_title_is_not_repeated_as_a_subheading(engine, settings):
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    assert article.title == SUBHEADING
    assert SUBHEADING not in article.body_html


def test_article_sentences_about_payments_stay(settings, tmp_path: Path):
    lines = [
        "OSLO – The fintech story of the year, told in numbers and names.",
        "Vipps reported record profits this year, its chief executive said on Tuesday.",
        "IBAN numbers are used across Europe to route transfers between banks.",
        "The vote was 55 to 73, with 20 abstentions.",
        "Vipps: #557320",
        "IBAN: NO15 0530 2294 668",
    ]
    source = tmp_path / "fintech.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    draft = read_article(source, boilerplate(settings), title="Fintech")
    for line in lines[:4]:
        assert line in draft.body_html
    assert draft.removed == ("Vipps: #557320", "IBAN: NO15 0530 2294 668")


def test_the_editor_is_told_what_was_left_out(settings):
    removed = read_article(SAMPLE_ARTICLE, boilerplate(settings)).removed
    assert len(removed) == 11
    assert removed[0] == "Support Dawat Media Center" and removed[-1] == "Comments are closed."


def test_ingest_stores_what_was_left_out_whole_and_in_its_place(engine, settings, tmp_path):
    """Each left-out block is kept as sanitised HTML with the number of body blocks before
    it, for the desk to show and put back."""
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    left_out = left_out_of(article.left_out)
    body = body_blocks(article.body_html)
    assert [b.text for b in left_out] == list(
        read_article(SAMPLE_ARTICLE, boilerplate(settings)).removed
    )
    assert left_out[-1] == LeftOut("<p>Comments are closed.</p>", "Comments are closed.", len(body))
    page = tmp_path / "page.html"
    page.write_text(
        "<html><body><article><p>The ferry is late again this week, the company said.</p>"
        "<p>Vipps: #557320</p><p>Its new boat arrives <b onclick='x()'>in May</b>.</p>"
        "</article></body></html>",
        encoding="utf-8",
    )
    stored = ingest_file(engine, settings, page, title="Ferry").article
    assert left_out_of(stored.left_out) == [LeftOut("<p>Vipps: #557320</p>", "Vipps: #557320", 1)]
    assert body_blocks(stored.body_html)[1] == "<p>Its new boat arrives <b>in May</b>.</p>"
    blocks, rest = put_back_into(body_blocks(stored.body_html), left_out_of(stored.left_out), 0)
    assert blocks[1] == "<p>Vipps: #557320</p>" and rest == []
    blocks, rest = take_out(blocks, rest, 1)
    assert rest == [LeftOut("<p>Vipps: #557320</p>", "Vipps: #557320", 1)]
    assert blocks == body_blocks(stored.body_html)


def test_an_article_edited_at_the_desk_keeps_the_edits_when_its_source_comes_in_again(
    engine, settings, tmp_path
):
    """The editor has the last word on title, summary and date; and on the body while
    the source's text is unchanged. A changed source brings its new text in."""
    source = tmp_path / "sample.txt"
    source.write_bytes(SAMPLE_ARTICLE.read_bytes())
    article = ingest_file(engine, settings, source, url=URL).article
    assert article.id is not None
    last = len(left_out_of(article.left_out)) - 1
    put_back(engine, article.id, last, block_key(left_out_of(article.left_out)[last].html))
    when = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    edit_article(engine, article.id, title="Moscow talks", summary="In short.", published=when)
    record(engine, None, AuditAction.ARTICLE_EDITED, f"article {article.id}", "changed title")
    again = ingest_file(engine, settings, source, url=URL)
    assert again.outcome == "unchanged" and again.article.id == article.id
    kept = again.article
    assert (kept.title, kept.summary, kept.published_at) == ("Moscow talks", "In short.", when)
    assert kept.body_html.endswith("<p>Comments are closed.</p>")
    source.write_text(source.read_text(encoding="utf-8").replace("Tuesday", "Wednesday"))
    changed = ingest_file(engine, settings, source, url=URL)
    assert changed.outcome == "updated" and changed.article.id == article.id
    assert "Wednesday" in changed.article.body_html and changed.article.title == "Moscow talks"
    assert not changed.article.body_html.endswith("<p>Comments are closed.</p>")

"""Each issue's reference: short, unique across years and issues, and a mistyped one
never names another issue."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest

from mailer.articles import ingest_file
from mailer.demo import SAMPLE_ARTICLE
from mailer.digest import plan_digest
from mailer.issues import article_issue, digest_issue
from mailer.references import article_reference, digest_reference, parse_reference
from mailer.render import render_article_issue

ALPHABET = string.digits + string.ascii_uppercase


def every_reference(prefix: str) -> list[str]:
    """Ten years of articles and digests."""
    found = []
    for year in range(2026, 2036):
        brought_in = datetime(year, 6, 1, tzinfo=UTC)
        found += [article_reference(prefix, number, brought_in) for number in range(1, 400)]
        found += [digest_reference(prefix, f"{year}-W{week:02d}") for week in range(1, 54)]
    return found


def test_references_are_short_and_unique_across_years_and_kinds():
    references = every_reference("DMC")
    assert len(set(references)) == len(references)
    assert article_reference("DMC", 4, datetime(2026, 3, 1, tzinfo=UTC)) == "DMC-2640"
    assert digest_reference("DMC", "2026-W49") == "DMC-260497"
    assert max(len(reference) for reference in references) <= 10
    assert all(parse_reference(reference, "DMC") == reference for reference in references)


@pytest.mark.parametrize("prefix", ["DMC", ""])
def test_a_reference_with_one_character_wrong_or_two_swapped_names_no_issue(prefix):
    """The Damm check digit catches every single substitution and every adjacent
    transposition: such a typo is never attributed to another issue, it is unmatched."""
    references = every_reference(prefix)
    for reference in references[::3]:
        start = len(prefix) + 1 if prefix else 0
        for i in range(start, len(reference)):
            for char in ALPHABET:
                typo = reference[:i] + char + reference[i + 1 :]
                if typo != reference:
                    assert parse_reference(typo, prefix) is None, (reference, typo)
            if i + 1 < len(reference) and reference[i] != reference[i + 1]:
                swapped = reference[:i] + reference[i + 1] + reference[i] + reference[i + 2 :]
                assert parse_reference(swapped, prefix) is None, (reference, swapped)


def test_a_reference_is_read_back_however_a_reader_typed_it():
    assert parse_reference(" dmc 2640 ", "DMC") == "DMC-2640"
    assert parse_reference("DMC2640", "DMC") == "DMC-2640"
    assert parse_reference("DMC-260-497", "DMC") == "DMC-260497"
    assert parse_reference("Gift for DMC-2640", "DMC") is None  # not a reference alone
    assert parse_reference("XYZ-2640", "DMC") is None
    assert parse_reference("", "DMC") is None


def test_an_issue_keeps_the_reference_it_was_rendered_with(engine, settings):
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    rendered = render_article_issue(settings, article)
    issue = article_issue(engine, settings, article)
    assert issue.reference == rendered.reference
    assert issue.reference == article_reference("DMC", article.id, article.ingested_at)
    assert article_issue(engine, settings, article).reference == issue.reference


def test_a_digest_gets_its_weeks_reference(engine, settings):
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    plan = plan_digest(engine, settings.publication.timezone, datetime.now(UTC))
    issue = digest_issue(engine, settings, plan)
    assert issue.reference == digest_reference("DMC", plan.week)

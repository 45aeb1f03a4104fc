"""The email templates as Jinja compiled them, kept in the user's cache folder for the next
process (caches.py): read back rather than compiled again, compiled afresh once edited,
never shared between languages, and no cache at all where none can be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer import caches, render
from mailer.articles import boilerplate
from mailer.demo import SAMPLE_ARTICLE
from mailer.models import Article, utcnow
from mailer.settings import Settings, bundled_path
from mailer.sources import read_article
from mailer.testing import make_settings

FOOTER = Path("email") / "partials" / "footer.html"


def newsroom_settings(tmp_path: Path, footer_line: str) -> Settings:
    """Settings whose config sits beside a templates/ folder holding a footer of the
    newsroom's own: the shipped one with `footer_line` added."""
    footer = tmp_path / "newsroom" / "templates" / FOOTER
    footer.parent.mkdir(parents=True, exist_ok=True)
    footer.write_text((bundled_path("templates") / FOOTER).read_text() + footer_line)
    config = tmp_path / "newsroom" / "mailer.toml"
    return make_settings(tmp_path).model_copy(update={"config_path": config})


def sample_article(settings: Settings) -> Article:
    draft = read_article(SAMPLE_ARTICLE, boilerplate(settings))
    return Article(id=3, guid=draft.guid, title=draft.title, summary=draft.summary,
                   body_html=draft.body_html, published_at=utcnow())  # fmt: skip


def in_a_new_process(settings: Settings, language: str = "en") -> str:
    """The issue's HTML as a new process renders it: no environment of this one's."""
    render._environment.cache_clear()
    return render.render_article_issue(settings, sample_article(settings), language=language).html


def kept(cache: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in cache.rglob("*.cache")}


def test_a_new_process_reads_the_compiled_templates_and_an_edited_one_is_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = newsroom_settings(tmp_path, "<p>The first footer</p>\n")
    first = in_a_new_process(settings)
    compiled = kept(tmp_path / "cache" / "mailer" / "templates")
    assert len(compiled) >= 6, "the issue's templates and partials, HTML and text"

    assert in_a_new_process(settings) == first
    assert kept(tmp_path / "cache" / "mailer" / "templates") == compiled, "read, not rewritten"

    settings = newsroom_settings(tmp_path, "<p>The edited footer</p>\n")
    edited = in_a_new_process(settings)
    assert "The edited footer" in edited and "The first footer" not in edited
    now = kept(tmp_path / "cache" / "mailer" / "templates")
    assert [path for path in now if now[path] != compiled[path]], "the footer compiled afresh"


def test_code_compiled_for_one_language_never_renders_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Jinja computes a filter of a constant as it compiles: 1234|number is written into
    the code, so each language keeps its own compiled templates."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = newsroom_settings(tmp_path, "<p>{{ 1234|number }} readers</p>\n")
    assert "1,234 readers" in in_a_new_process(settings, "en")
    assert "۱٬۲۳۴ readers" in in_a_new_process(settings, "fa-AF")
    assert "1,234 readers" in in_a_new_process(settings, "en")


def test_a_cache_folder_that_cannot_be_made_means_no_cache_not_a_failed_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert caches.cache_folder("templates") is None
    settings = newsroom_settings(tmp_path, "<p>Still rendered</p>\n")
    assert "Still rendered" in in_a_new_process(settings)

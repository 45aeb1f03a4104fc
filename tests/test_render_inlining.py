"""CSS inlining by css-inline, held to premailer's (the inliner before, a test dependency
now): every element of the article issue, the digest and their donors' copies, in a
left-to-right and a right-to-left language, ends with the same style declarations and
attributes, the same text, and the same <style> tag (its media queries and their
!important) either way. One difference, chosen: an article's image keeps its own height
attribute, which premailer overwrote with "auto" from the style."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import lxml.etree
import lxml.html
import pytest

from mailer import render
from mailer.articles import boilerplate
from mailer.demo import SAMPLE_ARTICLE
from mailer.models import Article
from mailer.sources import read_article
from mailer.testing import make_settings

PUBLISHED = datetime(2025, 10, 8, 9, tzinfo=UTC)
# An article's image with its size, as the sanitiser keeps it: the one place the two differ
FIGURE = (
    '\n<figure><img src="https://dawatmedia.example/kabul.jpg" alt="Kabul" width="600" '
    'height="400"><figcaption>Kabul, October</figcaption></figure>'
)


def premailer_inline(html: str) -> str:
    """What render.inline_css did with premailer, option for option."""
    from premailer import Premailer

    inlined: str = Premailer(
        html,
        strip_important=False,
        keep_style_tags=True,
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    return inlined


def declarations(style: str | None) -> dict[str, str]:
    """A style attribute as property -> value; cssutils writes font names in double
    quotes where the templates use single ones, which means the same."""
    pairs = (part.split(":", 1) for part in (style or "").split(";") if ":" in part)
    return {k.strip().lower(): " ".join(v.split()).replace('"', "'") for k, v in pairs}


def elements(html: str) -> list[lxml.html.HtmlElement]:
    """Every element in document order; the <tbody> an HTML5 parser adds to each table
    (as every browser and mail client does) is left out."""
    document = lxml.html.document_fromstring(html)
    return [e for e in document.iter() if isinstance(e.tag, str) and e.tag != "tbody"]


@pytest.fixture(scope="module")
def inlined_both_ways(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str]]:
    """(what, css-inline's output as render made it, premailer's of the same HTML)."""
    settings = make_settings(tmp_path_factory.mktemp("inlining"))
    draft = read_article(SAMPLE_ARTICLE, boilerplate(settings))
    article = Article(id=7, guid=draft.guid, title=draft.title, summary=draft.summary,
                      body_html=draft.body_html + FIGURE, url=draft.url, published_at=PUBLISHED,
                      ingested_at=PUBLISHED)  # fmt: skip
    second = Article(id=8, guid="second", title="Second", summary="The second's summary",
                     body_html="<p>Two</p>", url="https://dawatmedia.example/2",
                     published_at=PUBLISHED, ingested_at=PUBLISHED)  # fmt: skip
    seen: list[tuple[str, str]] = []
    real = render.inline_css

    def recording(html: str) -> str:
        seen.append((html, real(html)))
        return seen[-1][1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "inline_css", recording)
        for language in ("en", "fa-AF"):
            issue = render.render_article_issue(settings, article, language=language)
            assert issue.thanks_html, "the shipped config has an appeal, so a donors' copy"
            week = "2025-W41"
            render.render_digest_issue(
                settings, [second, article], week, PUBLISHED, PUBLISHED, language=language
            )
    names = [f"{kind} {copy} {lang}" for lang in ("en", "fa-AF") for kind in ("issue", "digest")
             for copy in ("appeal", "donors")]  # fmt: skip
    pairs = zip(names, seen, strict=True)
    return [(name, ours, premailer_inline(html)) for name, (html, ours) in pairs]


def test_every_element_gets_the_styles_and_attributes_premailer_gave_it(inlined_both_ways):
    for what, ours, theirs in inlined_both_ways:
        mine, reference = elements(ours), elements(theirs)
        assert [e.tag for e in mine] == [e.tag for e in reference], what
        styled = images = 0
        for a, b in zip(mine, reference, strict=True):
            where = f"{what}: <{a.tag} class={a.get('class')!r}>"
            assert declarations(a.get("style")) == declarations(b.get("style")), where
            ours, theirs = ({k: v for k, v in e.attrib.items() if k != "style"} for e in (a, b))
            if a.tag == "img" and theirs.get("height") == "auto":
                # premailer wrote the style's height:auto over the image's own height, a
                # value the attribute does not take: Outlook for Windows, which reads the
                # attribute and not the style, gets the image's real height from us
                assert ours.pop("height") == "400" and theirs.pop("height") == "auto", where
                images += 1
            assert ours == theirs, where
            styled += bool(a.get("class")) and "article-body" in (a.get("class") or "")
        assert styled, f"{what}: the article's rules had elements to inline into"
        # the digest shows an article without an address of its own whole, image and all
        assert images == 1, f"{what}: the article's image"


def test_the_style_tag_media_queries_text_and_comments_are_kept_alike(inlined_both_ways):
    for what, ours, theirs in inlined_both_ways:
        mine, reference = (lxml.html.document_fromstring(h) for h in (ours, theirs))
        assert mine.xpath("//style/text()") == reference.xpath("//style/text()"), what
        assert "!important" in "".join(mine.xpath("//style/text()")), what
        texts = [re.sub(r"[ \t\r\n]+", " ", d.body.text_content()) for d in (mine, reference)]
        assert texts[0] == texts[1], f"{what}: the same text, but for where a line breaks"
        comments = [[c.text for c in d.iter(lxml.etree.Comment)] for d in (mine, reference)]
        assert comments[0] == comments[1] and any("[if mso]" in c for c in comments[0]), what


def test_placeholders_and_links_pass_through_untouched(inlined_both_ways):
    for what, ours, _theirs in inlined_both_ways:
        assert f'href="{render.UNSUBSCRIBE_URL}"' in ours, what
        assert ours.count(render.EMAIL) == 1, what


def test_nothing_is_fetched_for_a_stylesheet_link():
    """A newsroom's template linking a stylesheet gets no request made for it."""
    html = (
        '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css">'
        "<style>p { color: red; }</style></head><body><p>x</p></body></html>"
    )
    assert 'style="color: red;"' in render.inline_css(html)

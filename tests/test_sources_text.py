"""Ingest of plain-text articles, pinned down on the newsroom's real published article."""

import tomllib
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from mailer.errors import SourceError
from mailer.sources import DEFAULT_PATTERNS, ArticleDraft, Boilerplate, read_article
from mailer.sources.cleanup import remove_boilerplate, sanitize_html
from mailer.sources.decode import decode_text
from mailer.sources.text import parse_text

CONFIG = Path(__file__).resolve().parents[1] / "config" / "mailer.toml"
SAMPLE_NAME = "moscow-format-article.txt"
SAMPLE = (resources.files("mailer.samples") / SAMPLE_NAME).read_text(encoding="utf-8")
# The article is everything above the site's first donation heading.
ARTICLE_LINES = SAMPLE.split("Support Dawat Media Center")[0].splitlines()
SUBHEADINGS = [
    "Lavrov’s Dual-Message: Praise for Taliban, a Warning to the West",
    "Deepening Ties and a Major Diplomatic Shift",
    "Taliban Seeks Legitimacy and Investment",
    "Regional Engagement and Unresolved Tensions",
]
DONATION = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["donation"]
# Built the way the config builds it: [sources] patterns, [donation] texts and numbers.
BOILERPLATE = Boilerplate(
    patterns=DEFAULT_PATTERNS,
    phrases=(DONATION["heading"], DONATION["appeal"]),
    numbers=(DONATION["account_number"], DONATION["iban"], DONATION["vipps"]),
)


class _Blocks(HTMLParser):
    """(tag, text) of each top-level block, as a reader's mail client would show them."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.blocks.append((tag, ""))

    def handle_data(self, data: str) -> None:
        if self.blocks and data.strip():
            tag, text = self.blocks[-1]
            self.blocks[-1] = (tag, text + data)


def blocks(html: str) -> list[tuple[str, str]]:
    parser = _Blocks()
    parser.feed(html)
    return parser.blocks


def parse(text: str = SAMPLE, **kwargs: object) -> ArticleDraft:
    return parse_text(text, SAMPLE_NAME, BOILERPLATE, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def draft() -> ArticleDraft:
    return parse()


@pytest.fixture
def titled() -> ArticleDraft:
    return parse(title="Moscow talks")


def test_sample_has_the_article_above_the_appeal() -> None:
    """Guards the fixture: 20 article lines, then the site's appeal."""
    assert len(ARTICLE_LINES) == 20
    assert ARTICLE_LINES[0].startswith("MOSCOW – In a")


def test_no_donation_boilerplate_survives(draft: ArticleDraft) -> None:
    """The appeal, heading, DNB line, IBAN, Vipps and "Comments are closed." are all gone."""
    for text in [
        "Support Dawat Media Center",
        "If there were ever a time to join us",
        "DNB Bank",
        "0530 2294668",
        "NO15",
        "Vipps",
        "557320",
        "Comments are closed",
        "Dawat",
    ]:
        assert text not in draft.body_html
        assert text not in draft.summary


def test_every_article_paragraph_survives_in_order(titled: ArticleDraft) -> None:
    """Each of the 20 article lines is one block, verbatim, in the published order."""
    assert [text for _, text in blocks(titled.body_html)] == ARTICLE_LINES


def test_subheadings_become_h2_and_everything_else_p(titled: ArticleDraft) -> None:
    found = blocks(titled.body_html)
    assert [text for tag, text in found if tag == "h2"] == SUBHEADINGS
    assert {tag for tag, text in found if text not in SUBHEADINGS} == {"p"}


def test_a_title_derived_from_a_subheading_is_not_repeated_below_it(draft) -> None:
    found = blocks(draft.body_html)
    assert [text for _, text in found] == [line for line in ARTICLE_LINES if line != draft.title]
    assert [text for tag, text in found if tag == "h2"] == SUBHEADINGS[1:]


def test_quotations_stay_whole_paragraphs_with_curly_quotes(draft: ArticleDraft) -> None:
    assert (
        "<p>“The current Afghan authorities are taking serious steps to normalize the "
        "situation in the country,” Lavrov stated.</p>"
    ) in draft.body_html
    assert (
        "<p>Afghanistan’s Acting Foreign Minister, Amir Khan Muttaqi, lauded Russia’s “bold "
        "move” of recognition. “I appreciate it and wish that all countries follow the same "
        "path,” he told the gathering.</p>"
    ) in draft.body_html


def test_dateline_stays_verbatim_in_the_first_paragraph(draft: ArticleDraft) -> None:
    assert blocks(draft.body_html)[0] == ("p", ARTICLE_LINES[0])
    assert draft.summary.startswith("MOSCOW – In a significant move")


def test_title_is_derived_from_the_first_subheading(draft: ArticleDraft) -> None:
    assert draft.title == SUBHEADINGS[0]
    assert draft.title_derived is True


def test_summary_is_cut_at_a_word_boundary_within_300_chars(draft: ArticleDraft) -> None:
    """The 307-char dateline paragraph is cut after a whole word, marked with an ellipsis."""
    assert len(draft.summary) <= 300
    assert draft.summary.endswith("in the war-torn…")
    assert ARTICLE_LINES[0].startswith(draft.summary.removesuffix("…"))


def test_identity_and_provenance_of_a_file_without_url(draft: ArticleDraft) -> None:
    assert draft.guid.startswith("sha256:") and len(draft.guid) == len("sha256:") + 64
    assert draft.url is None
    assert draft.source == "text:moscow-format-article.txt"


def test_given_title_is_used_on_one_line_and_keeps_the_guid(draft: ArticleDraft) -> None:
    """A new --title is the same article: same guid; a subject never holds a newline."""
    titled = parse(title="  Russia hosts the\r\nTaliban\n in Moscow ")
    assert titled.title == "Russia hosts the Taliban in Moscow"
    assert titled.title_derived is False
    assert titled.guid == draft.guid
    assert f"<h2>{draft.title}</h2>" in titled.body_html, "the subheading is back in the body"


def test_url_is_the_guid_when_given() -> None:
    url = "https://dawatmedia.example/2025/10/moscow-format"
    assert parse(url=url).guid == url
    assert parse(url=url).url == url


def test_url_that_is_not_a_web_address_is_refused() -> None:
    with pytest.raises(SourceError, match=r"moscow-format-article\.txt.*https://"):
        parse(url="javascript:alert(1)")


def test_published_time_must_carry_a_time_zone() -> None:
    when = datetime(2025, 10, 7, 9, 30, tzinfo=UTC)
    assert parse(published=when).published_at == when
    with pytest.raises(SourceError, match="no time zone"):
        parse(published=datetime(2025, 10, 7, 9, 30))


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8-sig"),
        lambda text: text.encode("cp1252"),
        lambda text: text.replace("\n", "\r\n").encode("cp1252"),
        lambda text: text.encode("utf-16"),
    ],
    ids=["utf-8-bom", "windows-1252", "windows-1252-crlf", "utf-16-bom"],
)
def test_other_encodings_give_the_same_article(tmp_path, encode, draft: ArticleDraft) -> None:
    """Curly quotes, dashes and € survive UTF-8 with BOM, Windows-1252 and UTF-16 files."""
    path = tmp_path / SAMPLE_NAME
    path.write_bytes(encode(SAMPLE))
    assert read_article(path, BOILERPLATE) == draft


def test_bytes_neither_utf8_nor_windows_1252_are_refused(tmp_path) -> None:
    """0x81 and 0x8D are undefined in Windows-1252; the message names file, offset, byte."""
    data = "“Quote,” he said.\n".encode("cp1252") + b"Bad \x81\x8d here.\n"
    path = tmp_path / "broken.txt"
    path.write_bytes(data)
    with pytest.raises(SourceError) as caught:
        read_article(path, BOILERPLATE)
    message = str(caught.value)
    offset = data.index(b"\x81")
    assert "broken.txt" in message
    assert f"0x81 at offset {offset}" in message
    assert "UTF-8 or Windows-1252 text" in message


def test_a_stray_byte_in_utf8_text_is_refused_not_read_as_windows_1252() -> None:
    """Else every “ in the article would reach subscribers as â€œ."""
    data = SAMPLE.encode("utf-8").replace(b"Lavrov stated", b"Lavrov \xff stated", 1)
    offset = data.index(b"\xff")
    with pytest.raises(SourceError, match=f"0xFF at offset {offset}"):
        decode_text(data, SAMPLE_NAME)


def test_binary_file_is_refused(tmp_path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(SourceError, match=r"photo\.txt looks like a binary file.*offset 6"):
        read_article(path, BOILERPLATE)


def test_newlines_are_normalised() -> None:
    assert decode_text(b"one\r\ntwo\rthree\n", "a.txt") == "one\ntwo\nthree\n"


def test_hostile_markup_comes_out_as_text_never_as_a_tag() -> None:
    text = "MOSCOW – Opening.\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>.\nEnd."
    body = parse(text).body_html
    assert "<script" not in body and "<img" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;." in body


def test_file_of_only_boilerplate_is_refused() -> None:
    only_appeal = SAMPLE.split(ARTICLE_LINES[-1])[1]
    with pytest.raises(SourceError, match=r"appeal\.txt contains no article text"):
        parse_text(only_appeal, "appeal.txt", BOILERPLATE)


def test_opening_title_line_becomes_the_title_not_body() -> None:
    draft = parse("Russia Hosts the Taliban\n" + SAMPLE)
    assert draft.title == "Russia Hosts the Taliban"
    assert draft.title_derived is False
    assert blocks(draft.body_html)[0] == ("p", ARTICLE_LINES[0])
    assert draft.guid != parse().guid  # the file's own text changed


def test_without_subheadings_the_title_is_the_opening_sentence_without_dateline() -> None:
    draft = parse("MOSCOW – Russia hosted the Taliban on Tuesday. Lavrov spoke.\nMore text.")
    assert draft.title == "Russia hosted the Taliban on Tuesday"
    assert draft.title_derived is True


def test_long_opening_sentence_title_is_cut_at_a_word_boundary() -> None:
    title = parse(" ".join(["word"] * 40) + ".\nMore text.").title
    assert len(title) <= 90 and title.endswith("word…")


def test_hard_wrapped_prose_is_joined_into_paragraphs() -> None:
    text = (
        "MOSCOW – In a significant move that underscores shifting geopolitical\n"
        "alignments, Russia hosted a high-level delegation from the Taliban\n"
        "government on Tuesday.\n"
        "\n"
        "Deepening Ties\n"
        "The Moscow talks highlight the Taliban’s ongoing quest for international\n"
        "legitimacy and Russia’s calculated strategy to fill the power vacuum.\n"
        "\n"
        "As the great powers recalibrate their approach, the meeting confirmed it.\n"
    )
    assert blocks(parse(text, title="Wrapped").body_html) == [
        ("p", "MOSCOW – In a significant move that underscores shifting geopolitical "
         "alignments, Russia hosted a high-level delegation from the Taliban government "
         "on Tuesday."),
        ("h2", "Deepening Ties"),
        ("p", "The Moscow talks highlight the Taliban’s ongoing quest for international "
         "legitimacy and Russia’s calculated strategy to fill the power vacuum."),
        ("p", "As the great powers recalibrate their approach, the meeting confirmed it."),
    ]  # fmt: skip


def test_payment_number_in_a_long_article_paragraph_stays() -> None:
    """Only short lines holding a payment number are payment details."""
    sentence = (
        "Police said the 557320 reference number appeared in court papers filed on Monday, "
        "and the prosecutor declined to comment further on the case."
    )
    assert remove_boilerplate([sentence, "Vipps #557320"], BOILERPLATE) == [sentence]


def test_payment_lines_go_by_number_even_without_patterns() -> None:
    numbers_only = Boilerplate(numbers=BOILERPLATE.numbers)
    lines = ["DNB Bank AC # 0530 2294668", "IBAN: NO15 0530 2294 668", "Pay: 557 320", "In 2021."]
    assert remove_boilerplate(lines, numbers_only) == ["In 2021."]


def test_nearly_identical_appeal_is_removed() -> None:
    """The site's copy may differ from the configured appeal by a word or punctuation."""
    site_copy = DONATION["appeal"].replace("Thank you", "Thank you!").replace("big", "large")
    heading = "SUPPORT  Dawat Media Centre"
    assert remove_boilerplate([heading, site_copy, "Article."], BOILERPLATE) == ["Article."]


def test_repeated_short_heading_inside_the_article_stays() -> None:
    """Only long verbatim repeats (an appeal printed twice) are dropped as repeats."""
    long_repeat = "Sign up for our newsletter to get every story in your inbox each week."
    paragraphs = ["Analysis", "First part.", long_repeat, "Analysis", "Second.", long_repeat]
    assert remove_boilerplate(paragraphs, Boilerplate()) == [
        "Analysis",
        "First part.",
        "Analysis",
        "Second.",
    ]


def test_default_patterns_match_the_documented_config() -> None:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert tuple(config["sources"]["boilerplate_patterns"]) == DEFAULT_PATTERNS


def test_sanitize_keeps_safe_markup_and_marks_links_noopener() -> None:
    html = (
        '<h1>T</h1><p onclick="x()">A <a href="https://x.example" target="_blank">link</a>'
        '<a href="javascript:alert(1)">bad</a><img src="https://x.example/a.jpg" alt="A">'
        "<script>alert(1)</script><style>p{}</style></p>"
    )
    assert sanitize_html(html) == (
        'T<p>A <a href="https://x.example" rel="noopener">link</a><a rel="noopener">bad</a>'
        '<img src="https://x.example/a.jpg" alt="A"></p>'
    )


def test_other_suffixes_are_read_as_text(tmp_path) -> None:
    path = tmp_path / "article.text"
    path.write_text(SAMPLE, encoding="utf-8")
    assert read_article(path, BOILERPLATE).source == "text:article.text"


def test_missing_file_is_reported_with_its_path(tmp_path) -> None:
    with pytest.raises(SourceError, match=r"Cannot read .*nowhere\.txt"):
        read_article(tmp_path / "nowhere.txt", BOILERPLATE)


def test_one_utf8_character_and_one_stray_byte_is_refused(tmp_path) -> None:
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(b"Caf\xc3\xa9 and \xe9 mixed.\n")
    with pytest.raises(SourceError, match="0xE9"):
        read_article(mixed, BOILERPLATE)

"""The plain-text part of an article, as a reader of the text/plain part sees it."""

from __future__ import annotations

from mailer.textpart import html_to_text


def test_headings_links_images_lists_quotes_and_rules_read_as_plain_text():
    html = (
        '<h2>Kabul &amp; Herat</h2><p>Read <a href="https://e.org/a">the report</a> or '
        '<a href="https://e.org/b">https://e.org/b</a>.<br>Next <img src="x.jpg" alt="A map">'
        "</p><ul><li>one</li><li>two</li></ul><blockquote><p>Quoted.</p></blockquote><hr>"
        "<div><p>in a div</p></div>"
    )
    assert html_to_text(html) == (
        "Kabul & Herat\n=============\n\n"
        "Read the report (https://e.org/a) or https://e.org/b. Next [A map]\n\n"
        "- one\n\n- two\n\n> Quoted.\n\n--------------------\n\nin a div"
    )


def test_paragraphs_wrap_at_the_width_and_an_element_left_open_is_closed_by_its_parent():
    assert html_to_text("<p>" + "word " * 8 + "</p>", width=20) == (
        "word word word word\nword word word word"
    )
    assert html_to_text("<div><p>one <em>two</div><p>three</p>") == "one two\n\nthree"
    assert html_to_text("  ") == ""


def test_a_loose_lists_paragraphs_and_a_list_inside_an_item_are_kept():
    """Markdown writes a list with blank lines between its items as <li><p>: the text part
    dropped those items whole."""
    html = (
        "<ul><li><p>First, in a paragraph</p><p>and its second</p></li>"
        "<li>Second<ul><li>a</li><li><p>b</p></li></ul></li></ul>"
    )
    assert html_to_text(html) == (
        "- First, in a paragraph and its second\n\n- Second\n  - a\n  - b"
    )


def test_quotations_and_lists_nested_past_the_width_are_wrapped_not_refused():
    """Each level takes two characters of the line: 36 levels of quotation used to leave
    textwrap a width of zero, and the issue could not be rendered (ValueError)."""
    words = "Deep words, every one of them kept."
    quoted = html_to_text("<blockquote>" * 50 + f"<p>{words}</p>" + "</blockquote>" * 50)
    lines = quoted.splitlines()
    assert all(line.startswith("> " * 50) for line in lines)
    assert " ".join(line.removeprefix("> " * 50) for line in lines) == words
    listed = html_to_text("<ul><li>level" * 50 + "</li></ul>" * 50)
    assert listed.splitlines()[-1] == "  " * 49 + "- level"
    assert html_to_text("<ul><li>" * 50 + words + "</li></ul>" * 50).endswith("of them kept.")

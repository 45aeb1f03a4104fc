"""Plain-text counterpart of sanitised article HTML, for the text/plain part.

The HTML is nh3's output (sources/cleanup.py): every element closed, so the standard
library's parser builds its tree as lxml's would, without lxml's 20-30 ms import in
every send's first render."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

WIDTH = 72
# A quotation or list nested deeper than the width allows is wrapped this wide, its
# prefixes past the line's end, rather than refused
NARROWEST = 20
BLOCKS = {"p", "h2", "h3", "h4", "blockquote", "li", "figcaption", "hr"}
# Elements that never have content or an end tag
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    parent: _Element | None = None
    # text and elements in document order
    content: list[str | _Element] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        return self.attrs.get(name, default)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.current = _Element("div", {})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = _Element(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.content.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.content.append(_Element(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        open_element: _Element | None = self.current
        while open_element is not None and open_element.tag != tag:
            open_element = open_element.parent
        if open_element is not None and open_element.parent is not None:
            self.current = open_element.parent  # closes whatever was left open inside it

    def handle_data(self, data: str) -> None:
        self.current.content.append(data)


def html_to_text(html: str, width: int = WIDTH) -> str:
    """Paragraphs wrapped at `width`, headings underlined, links as "text (url)"."""
    if not html.strip():
        return ""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    blocks: list[str] = []
    _collect_blocks(builder.root, blocks, width)
    return "\n\n".join(block for block in blocks if block)


def _collect_blocks(element: _Element, blocks: list[str], width: int) -> None:
    """The outermost blocks, in document order (a block's own blocks are its text)."""
    blocks.extend(_block_text(block, width) for block in _outer_blocks(element))


def _outer_blocks(element: _Element) -> Iterator[_Element]:
    for child in element.content:
        if isinstance(child, _Element):
            yield from [child] if child.tag in BLOCKS else _outer_blocks(child)


def _block_text(element: _Element, width: int) -> str:
    if element.tag == "hr":
        return "-" * 20
    text = " ".join(_inline_text(element).split())
    if element.tag in {"h2", "h3", "h4"}:
        return f"{text}\n{('=' if element.tag == 'h2' else '-') * min(len(text), width)}"
    if element.tag == "blockquote":
        inner = "\n\n".join(
            _block_text(child, max(width - 2, NARROWEST))
            for child in element.content
            if isinstance(child, _Element) and child.tag in BLOCKS
        )
        body = inner or textwrap.fill(text, max(width - 2, NARROWEST))
        return "\n".join(f"> {line}".rstrip() for line in body.splitlines())
    if element.tag == "li":
        return _list_item(element, width)
    return _fill(text, width)


def _list_item(element: _Element, width: int) -> str:
    """A list item: its text with that of the paragraphs inside it (a loose Markdown
    list's <li><p>), then the items of a list inside it, indented under it."""
    words, items = [_inline_text(element)], []
    for block in _outer_blocks(element):
        if block.tag == "li":
            items.append(textwrap.indent(_list_item(block, max(width - 2, NARROWEST)), "  "))
        elif block.tag != "hr":
            words.append(_inline_text(block))
    first = _fill(" ".join(" ".join(words).split()), width, "- ")
    return "\n".join(([first] if first else []) + items)


def _fill(text: str, width: int, prefix: str = "") -> str:
    return textwrap.fill(
        text,
        width,
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
        break_long_words=False,
        break_on_hyphens=False,
    )


def _inline_text(element: _Element) -> str:
    parts = []
    for child in element.content:
        if isinstance(child, str):
            parts.append(child)
        elif child.tag == "br":
            parts.append("\n")
        elif child.tag == "img":
            alt = child.get("alt")
            parts.append(f"[{alt}]" if alt else "")
        elif child.tag == "a":
            label, href = _inline_text(child).strip(), child.get("href")
            parts.append(label if not href or href in label else f"{label} ({href})")
        elif child.tag not in BLOCKS:
            parts.append(_inline_text(child))
    return "".join(parts)

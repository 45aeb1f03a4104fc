"""Ingest and after: an article's body as its blocks (paragraphs, headings, lists,
quotations: one top-level element each), and what the cleaner left out of it.

Each left-out block keeps its sanitised HTML and its place: `at` is the number of body
blocks before it, so put back it returns between the same neighbours. An editor may
put one back or take a body block out; both keep every other left-out block's place."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import lxml.html
from lxml import etree


@dataclass(frozen=True)
class LeftOut:
    html: str  # sanitised, as it would stand in the body
    text: str  # its text on one line, for the editor to read
    at: int  # how many body blocks come before it


def body_blocks(body_html: str) -> list[str]:
    """The body's top-level blocks, each as HTML (loose text becomes a paragraph)."""
    if not body_html.strip():
        return []
    blocks: list[str] = []
    for part in lxml.html.fragments_fromstring(body_html):
        if isinstance(part, str):
            if part.strip():
                paragraph = lxml.html.Element("p")
                paragraph.text = part.strip()
                blocks.append(_html(paragraph))
        else:
            blocks.append(_html(part))
    return blocks


def block_text(block_html: str) -> str:
    element = lxml.html.fragment_fromstring(block_html, create_parent="div")
    return " ".join(element.text_content().split())


def _html(element: lxml.html.HtmlElement) -> str:
    return str(etree.tostring(element, encoding="unicode", method="html", with_tail=False))


def join_blocks(blocks: list[str]) -> str:
    """The body again, one block a line, as the cleaner writes it."""
    return "\n".join(blocks)


def put_back(
    blocks: list[str], left_out: list[LeftOut], index: int
) -> tuple[list[str], list[LeftOut]]:
    """The body with left-out block `index` back at its place, and the blocks still left
    out (those after it now have one more body block before them). Raises IndexError."""
    chosen = left_out[index]
    at = min(chosen.at, len(blocks))
    body = [*blocks[:at], chosen.html, *blocks[at:]]
    rest = [*left_out[:index], *(_moved(b, +1) for b in left_out[index + 1 :])]
    return body, rest


def take_out(
    blocks: list[str], left_out: list[LeftOut], index: int
) -> tuple[list[str], list[LeftOut]]:
    """The body without block `index`, and the left-out blocks with it among them, at its
    place. Raises IndexError."""
    chosen = blocks[index]
    before = [b for b in left_out if b.at <= index]
    after = [_moved(b, -1) for b in left_out if b.at > index]
    taken = LeftOut(chosen, block_text(chosen), index)
    return [*blocks[:index], *blocks[index + 1 :]], [*before, taken, *after]


def _moved(block: LeftOut, by: int) -> LeftOut:
    return LeftOut(block.html, block.text, block.at + by)


def left_out_json(blocks: list[LeftOut] | tuple[LeftOut, ...]) -> str:
    return json.dumps([asdict(b) for b in blocks], ensure_ascii=False)


def left_out_of(stored: str) -> list[LeftOut]:
    """The left-out blocks as stored in `article.left_out` ("[]" for an article brought
    in before they were kept)."""
    try:
        found = json.loads(stored or "[]")
    except ValueError:
        return []
    return [
        LeftOut(str(b.get("html", "")), str(b.get("text", "")), int(b.get("at", 0)))
        for b in found
        if isinstance(b, dict)
    ]

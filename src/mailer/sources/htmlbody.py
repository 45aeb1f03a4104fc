"""Ingest, shared step for HTML: an article body from any source (a feed's content, a web
page's main text, rendered Markdown, plain text) becomes the email-safe body.

The rules, in order: what never reaches an email goes whole (scripts, styles, frames,
forms, embeds, navigation, share and related-post boxes, comment sections, the site's
own donation boxes); h1 becomes h2; links and images are made absolute against the
article's address and kept only for http(s) (and mailto for links); tracking pixels go;
an image without alt text gets its caption or title; wide images are scaled to the
column; "Read more" links go; each block is then judged by the boilerplate rules of
cleanup.py. nh3 has the last word on what tags, attributes and URL schemes remain, and
the blocks come out one per line, so the same article gives the same body whichever
source it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from mailer.sources.blocks import LeftOut
from mailer.sources.cleanup import Boilerplate, boilerplate_flags, sanitize_html

# Whole elements (with their content) that never reach an email.
_DROP_TAGS = (
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "select", "textarea", "noscript", "template", "svg", "math", "canvas",
    "video", "audio", "nav", "aside", "footer", "header",
)  # fmt: skip
# Class and id names of the boxes a site puts around and inside its articles: whole
# names, or names starting with one of _BOX_PREFIXES ("share-price" is article text).
_BOXES = frozenset(
    {
        "share", "shares", "sharing", "share-buttons", "share-links", "sharing-buttons",
        "share-this", "social", "social-share", "social-links", "related", "related-posts",
        "comments", "comment-respond", "respond", "donate", "donation", "newsletter",
        "subscribe", "advert", "advertisement", "ad", "ads", "promo", "sidebar", "widget",
        "navigation", "nav", "breadcrumb", "breadcrumbs", "author-box", "no-comments",
    }
)  # fmt: skip
_BOX_PREFIXES = (
    "sharedaddy", "sd-sharing", "jp-relatedposts", "wp-block-social", "social-", "related-",
    "donat", "newsletter-", "advert", "comments-", "widget_", "kg-signup",
)  # fmt: skip
_READ_MORE = re.compile(r"\s*(read more|continue reading|read the full (article|story))\b", re.I)
_BLOCKS = ("p", "h2", "h3", "h4", "ul", "ol", "blockquote", "figure", "hr")
_CONTAINERS = ("ul", "ol", "blockquote", "figure")
_WRAPPERS = ("div", "section", "article", "main")
_HEADINGS = ("h2", "h3", "h4")
COLUMN_WIDTH = 520  # the email's 600 px column less its padding
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|&#(x0*[0-8bcef]|x0*1[0-9a-f]|0*([0-8]|1[1-9]|2[0-9]|3[01]));",
    re.I,
)


@dataclass(frozen=True)
class CleanBody:
    html: str
    paragraphs: list[str]  # the text of each block kept, for summaries and checks
    removed: tuple[str, ...]  # the text of each block left out as boilerplate
    first_heading: str | None = None  # the first block's text, when it is a heading
    left_out: tuple[LeftOut, ...] = ()  # the removed blocks whole, each with its place


def clean_body(
    html: str, base_url: str | None, rules: Boilerplate, title: str | None = None
) -> CleanBody:
    """The email-safe body of an article's HTML (see the module docstring)."""
    html = _CONTROL.sub("", html)  # lxml refuses them, and no text holds them
    root = lxml.html.fragment_fromstring(sanitize_html(html, wide=True), create_parent="div")
    _drop_site_boxes(root)
    for element in list(root.iter()):
        if element.getparent() is None:
            continue
        if element.tag in _WRAPPERS:
            element.drop_tag()  # its content takes its place
        elif element.tag == "h1":
            element.tag = "h2"
        elif element.tag in ("h5", "h6"):
            element.tag = "h4"
        elif element.tag == "a":
            _link(element, base_url)
        elif element.tag == "img":
            _image(element, base_url, title)
    blocks = _blocks(root)
    if title:  # the title again, as a heading of the body, is not shown twice
        title = " ".join(title.split())
        blocks = [b for b in blocks if b.tag not in _HEADINGS or _text(b) != title]
    texts = [_text(block) for block in blocks]
    flags = boilerplate_flags(texts, rules)
    kept: list[lxml.html.HtmlElement] = []
    left_out: list[LeftOut] = []
    for block, text, drop in zip(blocks, texts, flags, strict=True):
        if drop and text:
            left_out.append(LeftOut(sanitize_html(_html(block)), text, len(kept)))
        elif not drop and _has_content(block):
            kept.append(block)
    removed = tuple(b.text for b in left_out)
    body = "\n".join(_html(b) for b in kept)
    heading = _text(kept[0]) if kept and kept[0].tag in _HEADINGS else None
    paragraphs = [_text(b) for b in kept]
    return CleanBody(sanitize_html(body), paragraphs, removed, heading or None, tuple(left_out))


def _html(block: lxml.html.HtmlElement) -> str:
    return str(etree.tostring(block, encoding="unicode", method="html", with_tail=False))


def _drop_site_boxes(root: lxml.html.HtmlElement) -> None:
    for element in list(root.iter()):
        if element.getparent() is None or not isinstance(element.tag, str):
            continue
        names = f"{element.get('class', '')} {element.get('id', '')}".lower().split()
        boxed = any(n in _BOXES or n.startswith(_BOX_PREFIXES) for n in names)
        quoted = element.tag == "footer" and any(
            a.tag == "blockquote" for a in element.iterancestors()
        )
        if (element.tag in _DROP_TAGS and not quoted) or boxed:
            element.drop_tree()


def _link(a: lxml.html.HtmlElement, base_url: str | None) -> None:
    href = _absolute(a.get("href"), base_url, ("http", "https", "mailto"))
    ends_its_block = not (a.tail or "").strip(" .…»→") and a.getnext() is None
    if ends_its_block and _READ_MORE.match(a.text_content() or "") and len(a.text_content()) < 100:
        a.drop_tree()  # "Continue reading", the way to the site: not the article's text
    elif href is None:
        a.drop_tag()  # its text stays, without the link
    else:
        a.set("href", href)


def _image(img: lxml.html.HtmlElement, base_url: str | None, title: str | None) -> None:
    schemes = ("http", "https")
    src = _absolute(img.get("src"), base_url, schemes) or _absolute(
        img.get("data-src"),
        base_url,
        schemes,  # a lazy-loaded image's real address
    )
    style = img.get("style") or ""
    width, height = (
        size if (size := _size(img.get(name))) is not None else _size_in(style, name)
        for name in ("width", "height")
    )
    if src is None or width == 0 or height == 0 or (width or 2) * (height or 2) <= 1:
        img.drop_tree()  # not shown in email, or a tracking pixel
        return
    img.set("src", src)
    for name in ("data-src", "style", "width", "height"):
        img.attrib.pop(name, None)
    if not (img.get("alt") or "").strip():
        caption = img.getparent().find(".//figcaption") if img.getparent() is not None else None
        alt = caption.text_content() if caption is not None else img.get("title") or title
        img.set("alt", " ".join((alt or "").split()))
    if width is not None and width > COLUMN_WIDTH:
        height = round(height * COLUMN_WIDTH / width) if height is not None else None
        width = COLUMN_WIDTH
    if width is not None:
        img.set("width", str(width))
    if height is not None and width is not None:
        img.set("height", str(height))


def _absolute(url: str | None, base_url: str | None, schemes: tuple[str, ...]) -> str | None:
    url = (url or "").strip()
    if not url:
        return None
    url = urljoin(base_url, url) if base_url else url
    return url if urlsplit(url).scheme.lower() in schemes else None


def _size(value: str | None) -> int | None:
    """A size in pixels written as such ("600", "600px"); None for anything else."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*(px)?\s*", value or "")
    return int(match[1]) if match else None


def _size_in(style: str, name: str) -> int | None:
    match = re.search(rf"(?:^|;)\s*{name}\s*:\s*(\d{{1,5}})\s*px", style, re.IGNORECASE)
    return int(match[1]) if match else None


def _blocks(root: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    """The top-level blocks; loose text and inline elements between them become
    paragraphs, and whitespace is made single spaces."""
    blocks: list[lxml.html.HtmlElement] = []
    loose: lxml.html.HtmlElement | None = None
    if (root.text or "").strip():
        loose = lxml.html.Element("p")
        loose.text = root.text
    for child in list(root):
        tail, child.tail = child.tail, None
        if child.tag in _BLOCKS:
            if loose is not None:
                blocks.append(loose)
            blocks.append(child)
            loose = None
        else:
            loose = loose if loose is not None else lxml.html.Element("p")
            loose.append(child)
        if (tail or "").strip():
            loose = loose if loose is not None else lxml.html.Element("p")
            _append_text(loose, tail or "")
    if loose is not None:
        blocks.append(loose)
    for block in blocks:
        _squeeze(block)
    return blocks


def _append_text(parent: lxml.html.HtmlElement, text: str) -> None:
    if len(parent):
        parent[-1].tail = (parent[-1].tail or "") + text
    else:
        parent.text = (parent.text or "") + text


def _squeeze(block: lxml.html.HtmlElement) -> None:
    """Runs of white space become one space; none at the start or end of a block, or
    between the items of a list or the paragraphs of a quotation."""
    for element in block.iter():
        if element.text:
            element.text = _SPACE.sub(" ", element.text)
        if element.tail and element is not block:
            element.tail = _SPACE.sub(" ", element.tail)
            parent = element.getparent()
            if parent is not None and parent.tag in _CONTAINERS and not element.tail.strip():
                element.tail = None
        if element.tag in _CONTAINERS and element.text and not element.text.strip():
            element.text = None
    block.text = (block.text or "").lstrip() or None
    last = block
    while len(last):
        last = last[-1]
    if last is block:
        block.text = (block.text or "").rstrip() or None
    else:
        last.tail = (last.tail or "").rstrip() or None


def _text(block: lxml.html.HtmlElement) -> str:
    return " ".join(block.text_content().split())


def _has_content(block: lxml.html.HtmlElement) -> bool:
    return bool(_text(block)) or block.find(".//img") is not None or block.tag == "hr"

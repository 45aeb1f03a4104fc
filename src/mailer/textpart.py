"""Plain-text counterpart of sanitised article HTML, for the text/plain part."""

from __future__ import annotations

import textwrap

import lxml.html

WIDTH = 72
BLOCKS = {"p", "h2", "h3", "h4", "blockquote", "li", "figcaption", "hr"}


def html_to_text(html: str, width: int = WIDTH) -> str:
    """Paragraphs wrapped at `width`, headings underlined, links as "text (url)"."""
    if not html.strip():
        return ""
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    blocks: list[str] = []
    for element in root.iter():
        if element.tag not in BLOCKS or _inside_block(element):
            continue
        blocks.append(_block_text(element, width))
    return "\n\n".join(block for block in blocks if block)


def _inside_block(element: lxml.html.HtmlElement) -> bool:
    return any(parent.tag in BLOCKS for parent in element.iterancestors())


def _block_text(element: lxml.html.HtmlElement, width: int) -> str:
    if element.tag == "hr":
        return "-" * 20
    text = " ".join(_inline_text(element).split())
    if element.tag in {"h2", "h3", "h4"}:
        return f"{text}\n{('=' if element.tag == 'h2' else '-') * min(len(text), width)}"
    if element.tag == "blockquote":
        inner = "\n\n".join(
            _block_text(child, width - 2) for child in element if child.tag in BLOCKS
        )
        body = inner or textwrap.fill(text, width - 2)
        return "\n".join(f"> {line}".rstrip() for line in body.splitlines())
    prefix = "- " if element.tag == "li" else ""
    return textwrap.fill(
        text,
        width,
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
        break_long_words=False,
        break_on_hyphens=False,
    )


def _inline_text(element: lxml.html.HtmlElement) -> str:
    parts = [element.text or ""]
    for child in element:
        if child.tag == "br":
            parts.append("\n")
        elif child.tag == "img":
            alt = child.get("alt")
            parts.append(f"[{alt}]" if alt else "")
        elif child.tag == "a":
            label, href = _inline_text(child).strip(), child.get("href", "")
            parts.append(label if not href or href in label else f"{label} ({href})")
        elif child.tag not in BLOCKS:
            parts.append(_inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)

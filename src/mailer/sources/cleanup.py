"""Ingest, shared step: strip a page's boilerplate and sanitise article HTML.

Every source reader (text now; Markdown, HTML and feeds later) splits its input into
paragraphs, drops the boilerplate with ``remove_boilerplate``, builds HTML and passes it
through ``sanitize_html`` before it becomes an ``ArticleDraft``. Nothing downstream
sanitises article bodies again, so what leaves here is what subscribers receive.
"""

import difflib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

import nh3

# Identical to [sources] boilerplate_patterns in config/mailer.toml (a test keeps them in
# step), for code that builds a Boilerplate without reading the config.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"comments are closed\.?",
    r"(share|tweet|email) this( article| story)?:?",
    r"the post .* appeared first on .*",
    r"(read more|continue reading)( ?…|\.\.\.)?",
    r"(vipps|iban|account for international payments)\s*:?\s*#?\s*[a-z]{0,2}[0-9][0-9 .-]*",
)

# A site's copy of the appeal may differ from the configured one by a word or a typo.
PHRASE_SIMILARITY = 0.9
# Payment details sit on short lines of their own; a long paragraph is article text even
# when one of its figures happens to contain the account number.
NUMBER_LINE_MAX_CHARS = 120
# Shorter "numbers" (a year, a price) would remove short article lines too.
NUMBER_MIN_DIGITS = 5
# A verbatim repeat this long is a site's appeal printed twice; shorter repeats are
# headings or refrains the rules above judge one by one.
REPEAT_MIN_WORDS = 7

ALLOWED_TAGS = frozenset(
    {"p", "h2", "h3", "h4", "ul", "ol", "li", "blockquote", "figure", "figcaption"}
    | {"strong", "em", "b", "i", "a", "img", "br", "hr"}
)
ALLOWED_ATTRIBUTES = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "width", "height"}),
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_SENTENCE_END = re.compile(r"[.!?…][\"”’)\]]*(?=\s|$)")


@dataclass(frozen=True)
class Boilerplate:
    """What a newsroom's site prints around its articles, to be removed on ingest.

    patterns: regular expressions matched against a whole paragraph, case-insensitively.
    phrases: texts (the donation heading, the appeal) removed when a paragraph says the
        same, ignoring case, spacing and punctuation, or nearly the same.
    numbers: payment numbers (account, IBAN, Vipps); a short paragraph containing one goes.
    """

    patterns: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()


def remove_boilerplate(paragraphs: list[str], boilerplate: Boilerplate) -> list[str]:
    """The paragraphs that are article text, in their order."""
    flags = boilerplate_flags(paragraphs, boilerplate)
    return [paragraph for paragraph, drop in zip(paragraphs, flags, strict=True) if not drop]


def boilerplate_flags(paragraphs: list[str], boilerplate: Boilerplate) -> list[bool]:
    """For each paragraph: is it the site's boilerplate?"""
    repeated = _repeated(paragraphs)
    phrases = [text for text in map(_normalise, boilerplate.phrases) if text]
    numbers = [d for d in map(_digits, boilerplate.numbers) if len(d) >= NUMBER_MIN_DIGITS]
    return [
        _key(paragraph) in repeated
        or _matches_pattern(paragraph, boilerplate.patterns)
        or _is_phrase(paragraph, phrases)
        or _has_number(paragraph, numbers)
        for paragraph in paragraphs
    ]


# The first pass over a source's HTML keeps the structure the cleaning rules look at
# (site boxes by class, headings of every level, image sizes, relative links); whatever
# can run or load something goes with its content.
_WIDE_TAGS = ALLOWED_TAGS | {
    "h1", "h5", "h6", "div", "span", "section", "article", "main", "nav", "aside", "header",
    "footer", "u", "s", "sub", "sup", "small", "cite", "q", "code", "pre", "time", "mark",
}  # fmt: skip
_NEVER = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "button", "select", "textarea", "noscript", "template", "svg", "math", "canvas",
    "video", "audio", "title", "head",
}  # fmt: skip


def sanitize_html(html: str, wide: bool = False) -> str:
    """Article HTML reduced to the tags and attributes an email body may carry (wide:
    the first pass of htmlbody.py, which also keeps classes, ids and relative links)."""
    # "*": attributes any tag may carry (nh3 would allow title and lang by default)
    attributes = {tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()} | {"*": {"lang"}}
    if wide:
        wider = {"title", "style", "data-src"}  # to tell pixels and lazy-loaded images
        attributes |= {"*": {"class", "id", "lang"}, "img": attributes["img"] | wider}
    return nh3.clean(
        html,
        tags=set(_WIDE_TAGS if wide else ALLOWED_TAGS),
        attributes=attributes,
        url_schemes=set(URL_SCHEMES),
        link_rel=None if wide else "noopener",
        # Stripping a <script> tag alone would leave its code behind as visible text.
        clean_content_tags=_NEVER if wide else {"script", "style"},
    )


def shorten(text: str, limit: int) -> str:
    """Text cut to at most ``limit`` chars at a sentence end, else a word boundary + "…"."""
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() <= limit]
    # A sentence end in the second half keeps whole sentences without losing too much.
    if ends and ends[-1] >= limit // 2:
        return text[: ends[-1]]
    prefix = text[: limit - 1]
    if not text[limit - 1].isspace() and re.search(r"\s", prefix):
        prefix = prefix.rsplit(None, 1)[0]
    return re.sub(r"[\s,;:–—-]+$", "", prefix) + "…"


def _key(paragraph: str) -> str:
    return " ".join(paragraph.split())


def _repeated(paragraphs: list[str]) -> set[str]:
    counts = Counter(map(_key, paragraphs))
    return {key for key, n in counts.items() if n > 1 and len(key.split()) >= REPEAT_MIN_WORDS}


def _matches_pattern(paragraph: str, patterns: tuple[str, ...]) -> bool:
    text = paragraph.strip()
    return any(re.fullmatch(pattern, text, re.IGNORECASE) for pattern in patterns)


def _normalise(text: str) -> str:
    """Text without case, punctuation or spacing differences ("$/€10" -> "10")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _is_phrase(paragraph: str, phrases: list[str]) -> bool:
    text = _normalise(paragraph)
    return any(text == phrase or _similar(text, phrase) for phrase in phrases)


def _similar(a: str, b: str) -> bool:
    # autojunk would treat spaces and common letters of a long appeal as noise.
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    # The quick upper bounds rule out most paragraphs before the quadratic ratio().
    return (
        matcher.real_quick_ratio() >= PHRASE_SIMILARITY
        and matcher.quick_ratio() >= PHRASE_SIMILARITY
        and matcher.ratio() >= PHRASE_SIMILARITY
    )


def _digits(text: str) -> str:
    # As ASCII digits, so a number typed in another script still matches the configured one.
    return "".join(str(unicodedata.decimal(ch)) for ch in text if ch.isdecimal())


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _has_number(paragraph: str, numbers: list[str]) -> bool:
    """Does a short paragraph hold one of the numbers, written as one number (its digits
    grouped by spaces, dots or dashes), not pieced together from several ("55 to 73")?"""
    if len(paragraph.strip()) >= NUMBER_LINE_MAX_CHARS:
        return False
    text = _ascii_digits(paragraph)
    return any(re.search(_number_pattern(number), text) for number in numbers)


def _number_pattern(digits: str) -> str:
    return r"(?<!\d)" + r"[ .-]?".join(digits) + r"(?!\d)"

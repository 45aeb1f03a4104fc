"""Readers' languages: the gettext catalogs every reader-facing string goes through
(locale/<language>/LC_MESSAGES/*.po, read at run time), dates and amounts as each
language writes them (Babel, from CLDR), and which languages a reader reads.

Catalogs are looked up as templates are: a newsroom's own locale/ folder beside its
config first (to correct or add a language), then the shipped one. Every .po file of a
language's folder is one catalog (email.po, site.po): they are merged."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

from mailer.sections import LANGUAGE_TAG

# Languages written right to left: the whole email or page is laid out mirrored.
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ps", "ur", "yi", "ckb", "sd", "ug", "dv"})

# CLDR's English without a region is American ("October 8, 2025"); the publication's
# English readers are in Europe and have always read "8 October 2025".
_REGION_FOR = {"en": "en_GB"}

# The digits of the numbering systems CLDR gives as a locale's own (fa, ps: arabext).
_DIGITS = {
    "arab": "٠١٢٣٤٥٦٧٨٩",
    "arabext": "۰۱۲۳۴۵۶۷۸۹",
    "beng": "০১২৩৪৫৬৭৮৯",
    "deva": "०१२३४५६७८९",
}


def is_rtl(language: str | None) -> bool:
    return bool(language) and primary(language or "") in RTL_LANGUAGES


def direction(language: str | None) -> str:
    """The value of a dir attribute for text in `language`."""
    return "rtl" if is_rtl(language) else "ltr"


def primary(language: str) -> str:
    """A tag's language without script or region: fa-AF -> fa."""
    return language.split("-")[0].lower()


def same_language(a: str | None, b: str | None) -> bool:
    """Whether two tags are one language for choosing what a reader reads (fa, fa-AF)."""
    return bool(a and b) and primary(a or "") == primary(b or "")


@cache
def babel_locale(language: str) -> Locale:
    """The CLDR locale for a BCP 47 tag: the tag itself, else its primary language, else
    English (a tag CLDR does not know still gets dates and numbers written somehow)."""
    for candidate in (_REGION_FOR.get(language.lower(), language), primary(language), "en_GB"):
        try:
            return Locale.parse(candidate, sep="-" if "-" in candidate else "_")
        except (UnknownLocaleError, ValueError):
            continue
    raise AssertionError("English is always known")  # pragma: no cover


def native_digits(text: str, language: str) -> str:
    """`text` with its ASCII digits in the language's own (۱۴۰۵ in Dari and Pashto)."""
    system = babel_locale(language).default_numbering_system
    digits = _DIGITS.get(system)
    return text.translate(str.maketrans("0123456789", digits)) if digits else text


def local_day(value: datetime | date | None, language: str, zone: ZoneInfo) -> str:
    """A day as readers of `language` write it ("8 October 2025", "8. oktober 2025",
    "۸ اکتوبر ۲۰۲۵"), in the publication's time zone."""
    if value is None:
        return ""
    day = value.astimezone(zone).date() if isinstance(value, datetime) else value
    return native_digits(format_date(day, "long", locale=babel_locale(language)), language)


def local_day_month(value: datetime, language: str, zone: ZoneInfo) -> str:
    """A day without its year ("8 October"), for a period's start within the same year."""
    locale = babel_locale(language)
    pattern = locale.datetime_skeletons.get("MMMMd")
    text = format_date(value.astimezone(zone).date(), pattern or "d MMMM", locale=locale)
    return native_digits(text, language)


def local_amount(amount: float, currency: str, language: str) -> str:
    """An amount with its currency as `language` writes it ("1 234,50 kr", "NOK 1,234.50")."""
    locale = babel_locale(language)
    text = format_currency(amount, currency, locale=locale, numbering_system="default")
    return native_digits(text, language)


def local_number(number: float, language: str) -> str:
    text = format_decimal(number, locale=babel_locale(language), numbering_system="default")
    return native_digits(text, language)


def parse_languages(value: str | Iterable[str]) -> tuple[str, ...]:
    """A reader's languages from "fa-AF, en" (first: the one mailer writes to them in),
    well formed and each once; ValueError naming what is not a language tag."""
    items = value.split(",") if isinstance(value, str) else value
    tags = [item.strip().replace("_", "-") for item in items if item.strip()]
    wrong = [tag for tag in tags if not LANGUAGE_TAG.match(tag)]
    if wrong:
        raise ValueError(f"not a language tag (such as fa-AF or nb): {', '.join(wrong)}")
    return tuple(dict.fromkeys(tags))


def reader_languages(languages: str | None, default: str) -> tuple[str, ...]:
    """The languages a reader reads, from their `subscriber.languages` ("fa-AF,en"; None
    or empty: the publication's language, `default`), their own first."""
    return tuple(t.strip() for t in (languages or "").split(",") if t.strip()) or (default,)


def own_language(languages: str | None, default: str) -> str:
    """The language mailer writes to a reader in: the first they read."""
    return reader_languages(languages, default)[0]


def supported(tag: str, offered: Iterable[str]) -> str | None:
    """The tag among `offered` that is `tag`'s language (fa -> fa-AF), or None."""
    offered = tuple(offered)
    exact = [o for o in offered if o.lower() == tag.lower()]
    return next(iter(exact or [o for o in offered if same_language(o, tag)]), None)


def negotiate(accept_language: str, offered: Iterable[str]) -> str | None:
    """The first of `offered` a browser's Accept-Language asks for, by its weights."""
    weighted = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and weight > 0:
            weighted.append((-weight, index, tag.strip()))
    offered = tuple(offered)
    for _, _, tag in sorted(weighted):
        found = supported(tag, offered)
        if found:
            return found
    return None


def catalog_dirs(config_path: Path | None, shipped: Path) -> tuple[Path, ...]:
    """Where catalogs are looked up, first match wins (the rule of template_dirs)."""
    candidates = [shipped]
    if config_path is not None:
        folder = config_path.resolve().parent
        candidates[:0] = [folder / "locale", folder.parent / "locale"]
    return tuple(dict.fromkeys(path for path in candidates if path.is_dir()))


@cache
def translations(dirs: tuple[Path, ...], language: str) -> Translations:
    """The merged catalogs for `language`. A message is taken from the nearest folder
    that translates it (fa_AF before fa), and there from the first of `dirs` (a
    newsroom's catalog may correct a few messages and leave the rest to the shipped one).
    Messages no catalog translates stay in English, the language of the source."""
    found = Translations(io.BytesIO(_EMPTY_MO))
    for folder in reversed(_catalog_folders(language)):
        for root in reversed(dirs):
            for po in sorted((root / folder / "LC_MESSAGES").glob("*.po")):
                found.merge(_read(po))  # what is merged later wins
    return found


def _catalog_folders(language: str) -> list[str]:
    """fa-AF -> ["fa_AF", "fa"]: the gettext names of a tag's folders, nearest first."""
    parts = language.split("-")
    names = ["_".join(parts[: n + 1]) for n in range(len(parts))][::-1]
    return list(dict.fromkeys(names))


def _read(po: Path) -> Translations:
    with po.open("rb") as handle:
        catalog = read_po(handle, domain=po.stem)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # untranslated and fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return Translations(compiled, domain=po.stem)


def _empty_mo() -> bytes:
    from babel.messages.catalog import Catalog

    compiled = io.BytesIO()
    write_mo(compiled, Catalog())
    return compiled.getvalue()


_EMPTY_MO = _empty_mo()

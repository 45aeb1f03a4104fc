"""The readers' catalogs (locale/): every string mailer writes to a reader, as extracted
from the code and templates the way `pybabel extract` does, is translated in every
shipped language, differs from the English, and is written in the language's script;
and the i18n helpers write dates, amounts and languages each language's way."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from mailer import i18n

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "locale"
DOMAINS = ("email", "site")
# the shipped languages, as gettext names their folders, and the script each is in
SHIPPED = {"nb": "latin", "fa_AF": "arabic", "ps": "arabic"}

_PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w*\}|<[^>]+>|&\w+;")
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_LATIN = re.compile(r"[A-Za-zÀ-ÿ]")


def _extracted(domain: str) -> dict[str, str]:
    """msgid -> where it is used, as `pybabel extract -F locale/<domain>.cfg` finds them."""
    with (LOCALE / f"{domain}.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def _catalog(language: str, domain: str) -> dict[str, object]:
    with (LOCALE / language / "LC_MESSAGES" / f"{domain}.po").open("rb") as handle:
        catalog = read_po(handle)
    # a plural entry is found by its singular and by its plural msgid, as extracted
    return {
        msgid: m
        for m in catalog
        if m.id and not m.fuzzy
        for msgid in ((m.id,) if isinstance(m.id, str) else m.id)
    }


def _wrong_script(text: str, script: str) -> bool:
    words = _PLACEHOLDER.sub("", text)
    arabic, latin = len(_ARABIC.findall(words)), len(_LATIN.findall(words))
    if script == "arabic":
        return arabic == 0 or latin > arabic
    return arabic > 0 or latin == 0


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("language", sorted(SHIPPED))
def test_every_reader_facing_string_is_translated(language: str, domain: str) -> None:
    extracted = _extracted(domain)
    catalog = _catalog(language, domain)
    problems = []
    for msgid, where in sorted(extracted.items()):
        message = catalog.get(msgid)
        strings = () if message is None else message.string  # type: ignore[attr-defined]
        strings = (strings,) if isinstance(strings, str) else tuple(strings)
        if not any(strings) or not all(strings):
            problems.append(f"missing: {msgid!r} ({where})")
            continue
        for text in strings:
            if text == msgid and _LATIN.search(_PLACEHOLDER.sub("", msgid)):
                problems.append(f"the same as the English: {msgid!r} ({where})")
            elif _wrong_script(text, SHIPPED[language]):
                problems.append(f"not in {SHIPPED[language]} script: {text!r} ({where})")
    assert not problems, f"{language}/{domain}.po:\n" + "\n".join(problems)


def test_catalogs_are_merged_nearest_first(tmp_path: Path) -> None:
    """A newsroom's own catalog corrects the messages it holds and leaves the rest to
    the shipped one; a region's folder (fa_AF) comes before its language's (fa)."""

    def po(folder: Path, entries: dict[str, str]) -> None:
        (folder / "LC_MESSAGES").mkdir(parents=True)
        body = "".join(f'msgid "{k}"\nmsgstr "{v}"\n\n' for k, v in entries.items())
        header = 'msgid ""\nmsgstr "Content-Type: text/plain; charset=utf-8\\n"\n\n'
        (folder / "LC_MESSAGES" / "email.po").write_text(header + body, encoding="utf-8")

    shipped, own = tmp_path / "shipped", tmp_path / "own"
    po(shipped / "fa", {"Donate": "کمک", "Read it": "بخوانید", "Footer": "پایان"})
    po(shipped / "fa_AF", {"Read it": "بخوانید (AF)"})
    po(own / "fa_AF", {"Donate": "کمک کنید"})
    found = i18n.translations((own, shipped), "fa-AF")
    assert found.gettext("Donate") == "کمک کنید"
    assert found.gettext("Read it") == "بخوانید (AF)"
    assert found.gettext("Footer") == "پایان"
    assert found.gettext("Unknown") == "Unknown"
    assert i18n.translations((own, shipped), "nb").gettext("Donate") == "Donate"


def test_dates_and_amounts_are_written_each_language_way() -> None:
    zone = ZoneInfo("Europe/Oslo")
    moment = datetime(2025, 10, 7, 23, 30, tzinfo=UTC)  # 8 October in Oslo
    assert i18n.local_day(moment, "en", zone) == "8 October 2025"
    assert i18n.local_day(moment, "nb", zone) == "8. oktober 2025"
    dari = i18n.local_day(moment, "fa-AF", zone)
    assert "۲۰۲۵" in dari and "۸" in dari and "اکتوبر" in dari
    assert i18n.local_amount(1234.5, "NOK", "nb") == "1\xa0234,50\xa0kr"
    assert "۱" in i18n.local_amount(1234.5, "NOK", "ps")
    assert i18n.local_number(12345, "en") == "12,345"


def test_languages_are_read_and_negotiated() -> None:
    assert i18n.parse_languages(" fa_AF, en ,fa-AF") == ("fa-AF", "en")
    with pytest.raises(ValueError, match="not a language tag"):
        i18n.parse_languages("fa-AF,english!")
    offered = ("en", "nb", "fa-AF", "ps")
    assert i18n.negotiate("fa-IR,fa;q=0.9,en;q=0.5", offered) == "fa-AF"
    assert i18n.negotiate("de, nn;q=0.4, nb;q=0.8", offered) == "nb"
    assert i18n.negotiate("de, fr;q=0.8", offered) is None
    assert i18n.negotiate("ps;q=0, en;q=0.1", offered) == "en"
    assert i18n.is_rtl("ps") and i18n.is_rtl("fa-AF") and not i18n.is_rtl("nb")
    assert i18n.direction("ur") == "rtl"

"""Ingest: an article's language, as its source declares it or, failing that, as its
letters show for the right-to-left scripts (which the email must lay out mirrored)."""

from __future__ import annotations

import re

from mailer.i18n import RTL_LANGUAGES as RTL_LANGUAGES
from mailer.i18n import is_rtl as is_rtl

# Letters only some languages written in Arabic script use.
_PASHTO = set("ټډړږښګڼېۍ")
_URDU = set("ٹڈڑںےۓ")
_PERSIAN = set("پچژگ")
_ARABIC_SCRIPT = re.compile(r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")
_HEBREW = re.compile(r"[\u0590-\u05ff\ufb1d-\ufb4f]")
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def language_of(declared: str | None, text: str) -> str | None:
    """A BCP 47 tag: the declared one when it is well formed (en_US -> en-US), else one
    read from a right-to-left text's letters, else None (the publication's language)."""
    tag = (declared or "").strip().replace("_", "-")
    if _LANGUAGE_TAG.match(tag):
        return tag
    letters = [ch for ch in text[:5000] if ch.isalpha()]
    if not letters:
        return None
    arabic = sum(bool(_ARABIC_SCRIPT.match(ch)) for ch in letters)
    if sum(bool(_HEBREW.match(ch)) for ch in letters) > len(letters) / 3:
        return "he"
    if arabic <= len(letters) / 3:
        return None
    found = set(letters)
    for language, marks in (("ps", _PASHTO), ("ur", _URDU), ("fa", _PERSIAN)):
        if found & marks:
            return language
    return "ar"

"""Ingest, first step for files: the bytes of an article file become text.

Editors save articles from whatever they have at hand: a UTF-8 editor, Word's "plain
text" (often Windows-1252 or UTF-16), a copy from the site. We accept UTF-8 (with or
without BOM), UTF-16 with a BOM, and otherwise Windows-1252, strictly: a byte that none of
these can decode, or a binary file, stops the ingest with the offset of the culprit rather
than sending subscribers mojibake.
"""

import codecs
import re

from mailer.errors import SourceError

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, newline, form feed and CR: text never holds them, binaries do.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f]")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
# A lead byte and its continuation bytes: how UTF-8 writes any non-ASCII character.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]{1,3}")
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029]")
# charset-normalizer's coherence: how much the decoded text reads as some language
# (0.5-0.7 for a news paragraph; 0 for bytes that only decode).
COHERENT = 0.2
_MUST_BE_TEXT = "The file must be UTF-8 or Windows-1252 text (or another script's code page)"


def decode_text(data: bytes, name: str) -> str:
    """Decode an article file's bytes; newlines become "\\n". Raises SourceError."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _NEWLINES.sub("\n", _decode_with_bom(data, name, encoding, len(bom)))
    match = _CONTROL_BYTES.search(data)
    if match:
        raise _binary_error(name, match.start(), data[match.start()])
    return _NEWLINES.sub("\n", _decode_plain(data, name))


def _decode_with_bom(data: bytes, name: str, encoding: str, bom_length: int) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        label = "UTF-8" if encoding == "utf-8-sig" else "UTF-16"
        why = f"is not valid {label}, the encoding its byte-order mark announces"
        raise _undecodable_error(name, error.start, data[error.start], why) from None
    match = _CONTROL_CHARS.search(text)
    if match:
        # UTF-16 code units are 2 or 4 bytes; re-encode the prefix to report a byte offset.
        codec = "utf-8" if encoding == "utf-8-sig" else "utf-16-le"
        offset = bom_length + len(text[: match.start()].encode(codec, "surrogatepass"))
        raise _binary_error(name, offset, ord(match.group()))
    return text


def _decode_plain(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        if _looks_like_damaged_utf8(data):
            offset = utf8_error.start
            why = "is not valid UTF-8, though the rest of the file is UTF-8 (damaged or mixed text)"
            raise _undecodable_error(name, offset, data[offset], why) from None
    detected = _other_script(data)
    if detected is not None:
        return detected
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as error:
        why = "is neither UTF-8 nor Windows-1252"
        raise _undecodable_error(name, error.start, data[error.start], why) from None


def _other_script(data: bytes) -> str | None:
    """The text, when charset-normalizer finds it in another script's code page (a
    Persian file in Windows-1256, a Russian one in Windows-1251): Windows-1252 would read
    any of them, as Latin gibberish."""
    from charset_normalizer import from_bytes

    # a high threshold: with the default one, it stops at the first code page that will
    # do (a Persian text in Windows-1256 came out as Kazakh Cyrillic)
    best = from_bytes(data, threshold=0.8).best()
    if best is None or best.coherence < COHERENT:
        return None  # no language it reads as: bytes, not text in some code page
    text = str(best)
    letters = [ch for ch in text if ch.isalpha()]
    beyond_latin = sum(ord(ch) > 0x24F for ch in letters)
    return text if letters and beyond_latin > len(letters) / 2 else None


def _looks_like_damaged_utf8(data: bytes) -> bool:
    """Most non-ASCII bytes form UTF-8 sequences: a UTF-8 file with a stray byte.

    Falling back to Windows-1252 there would turn every “ into â€œ across the whole
    article, so we report the stray byte instead. Real Windows-1252 text forms such
    sequences only by accident (an "É" right before a curly quote), far less often than it
    has lone non-ASCII bytes.
    """
    in_sequences = _UTF8_SEQUENCE.findall(data)
    sequence_bytes = sum(len(sequence) for sequence in in_sequences)
    stray_bytes = sum(byte >= 0x80 for byte in data) - sequence_bytes
    return bool(in_sequences) and len(in_sequences) >= stray_bytes


def _undecodable_error(name: str, offset: int, value: int, why: str) -> SourceError:
    return SourceError(
        f"{name}: byte 0x{value:02X} at offset {offset} {why}. {_MUST_BE_TEXT}: "
        "delete or retype that character, or save the file again as UTF-8, then ingest it again."
    )


def _binary_error(name: str, offset: int, value: int) -> SourceError:
    return SourceError(
        f"{name} looks like a binary file, not text: it holds the control character "
        f"0x{value:02X} at byte offset {offset}. {_MUST_BE_TEXT}, for example the article "
        "pasted into a .txt file."
    )


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def decode_page(data: bytes, name: str, declared: str | None = None) -> str:
    """An HTML page's text: in the charset its server or its <meta> declares, else
    UTF-8, else what charset-normalizer detects. Raises SourceError."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode_with_bom(data, name, encoding, len(bom))
    match = _META_CHARSET.search(data[:4096])
    charset = declared or (match[1].decode("ascii") if match else None)
    if charset:
        try:
            return data.decode(_codec(charset, name))
        except UnicodeDecodeError as error:
            why = f"is not valid {charset}, the character set the page declares"
            raise _undecodable_error(name, error.start, data[error.start], why) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    candidates = [c for c in from_bytes(data, threshold=0.8) if c.coherence >= COHERENT]
    if not candidates:
        raise SourceError(
            f"{name}: cannot tell the character set of the page (it declares none and is "
            "not UTF-8); save it as UTF-8 and ingest the file"
        )
    best = candidates[0]
    # a close call goes to the code page web pages use (cp1251 over mac_cyrillic)
    for candidate in candidates[1:]:
        if candidate.encoding.startswith("cp125") and candidate.chaos <= best.chaos + 0.01:
            return str(candidate)
    return str(best)


def _codec(charset: str, name: str) -> str:
    # browsers read a page declared ISO-8859-1 as Windows-1252, and so do we
    charset = "cp1252" if charset.lower() in ("iso-8859-1", "latin1", "us-ascii") else charset
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise SourceError(
            f"{name}: the page declares an unknown character set {charset!r}"
        ) from None

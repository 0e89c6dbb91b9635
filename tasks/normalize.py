"""Text normalisation applied to every document at ingest: NFC, no control characters, tidy whitespace.

Indentation and single blank lines are kept (code depends on them); only trailing spaces, runs of
more than two blank lines and leading blank lines go. Each rewrite is guarded by a cheap test (byte
searches run at memory speed, regexes do not), because most documents need none of them and this
function dominates ingest time.
"""
from __future__ import annotations

import re
import unicodedata

# C0/C1 controls except tab and newline, plus zero-width space and the BOM.
_DROP_CODES = [c for c in range(0x00, 0x20) if c not in (0x09, 0x0A)] + list(range(0x7F, 0xA0)) + [0x200B, 0xFEFF]
_DROP = dict.fromkeys(_DROP_CODES, None)
_ASCII_CONTROLS = bytes(c for c in _DROP_CODES if c < 0x80)
_C1_CONTROL = re.compile("[\x80-\x9f]")
_BLANK_RUN = re.compile(r"\n{4,}")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def _has_controls(text: str) -> bool:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw.translate(None, _ASCII_CONTROLS)) != len(raw):
        return True
    if b"\xe2\x80\x8b" in raw or b"\xef\xbb\xbf" in raw:
        return True
    # C1 controls are U+0080..U+009F, encoded \xc2\x80..\xc2\x9f; \xc2 alone is common (NBSP, ©, °).
    return b"\xc2" in raw and _C1_CONTROL.search(text) is not None


def normalize_text(text: str) -> str:
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _has_controls(text):
        text = text.translate(_DROP)
    if " \n" in text or "\t\n" in text:
        text = "\n".join([line.rstrip(" \t") for line in text.split("\n")])
    if "\n\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n\n", text)
    text = text.rstrip()
    if text[:1].isspace():  # drop leading blank lines, keep the first line's indentation
        text = _LEADING_BLANK_LINES.sub("", text)
    return text

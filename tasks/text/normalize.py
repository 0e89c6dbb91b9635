"""Text normalisation applied to every document at ingest: NFC, no control characters, tidy whitespace.

Indentation and single blank lines are kept (code depends on them); only trailing spaces, runs of
more than two blank lines and leading blank lines go. NFC is checked first (a quick check, most text already
is); the rest is one pass in C, because in Python it was a third of ingest's time.
"""
from __future__ import annotations

import unicodedata

from curate.tasks.text import _textscan


def normalize_text(text: str) -> str:
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return _textscan.normalize(text)

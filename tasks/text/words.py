"""Words, tokens, n-grams and sentence ends in every script: the text primitives every consumer shares.

Chinese, Japanese and Thai are written without spaces between words, so a "word" that is a run between spaces (or
a run of `\\w`) is a whole clause there: 12 to 35 characters where an English word has 5. Here a letter of such a
script (Han, Hiragana, Katakana, Thai, Lao, Myanmar, Khmer) is a word of its own; every other script keeps its
spaced words, so English, French or Korean text gives exactly what it gave before. Characters rather than a word
segmenter (jieba, MeCab, pythainlp): they need no model and no dictionary, cost nothing per language, and character
n-grams are what NeMo Curator, Zyda-2 and MAP-Neo shingle CJK text with; an n-gram of 5 characters of Chinese holds
about as much as 5 English words hold letters of meaning (tests/benchmarks/bench_cjk.py measures the choice).

Two granularities, as before:
- `words(text)`: what the quality rules count: white-space words, where an unspaced letter starts a word of its own
  (punctuation and marks stay with the word before them, as `str.split()` keeps "end." whole). Computed in C
  (`_textscan.word_stats` and friends); this is the reference the tests hold the C to.
- `tokens(text)`: what shingles and n-grams are made of (dedup's MinHash, decontamination, stop words): lower-cased
  runs of `\\w`, an unspaced letter a token of its own. `token_hashes` is the same in C, as numbers.

`TOKENS` names this choice; the dedup index and the decontamination index record it, so that a corpus deduplicated
under other tokens is refused rather than compared with shingles of another kind.
"""
from __future__ import annotations

import re

import numpy as np

from curate.tasks.text import _textscan

TOKENS = "words+unspaced-letters/1"
UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
            "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f")
_TOKEN = re.compile(rf"(?=[{UNSPACED}])\w|[^\W{UNSPACED}]+")
_UNSPACED = re.compile(rf"[{UNSPACED}]")

# How a sentence ends in each script: Latin, CJK (full-width and half-width), Devanagari danda, Arabic and Urdu,
# Armenian, Ethiopic, Myanmar. (Thai has no full stop: a space ends its sentences.) Closing quotes and brackets may
# follow; the quality rules and the code-shape measure build their sets from these.
FULL_STOPS = (".", "!", "?", "。", "！", "？", "．", "｡", "।", "۔", "؟", "։", "።", "။")
CLOSERS = ('"', "'", "”", "’", "»", "」", "』")

WORD_CHARS = 24  # longer tokens are hashed by their first 24 code points and their length
_rng = np.random.RandomState(0x5EED)
CHAR_MULT = (_rng.randint(1, 1 << 62, WORD_CHARS, dtype=np.uint64) | np.uint64(1))
GRAM_MULT = (_rng.randint(1, 1 << 62, 16, dtype=np.uint64) | np.uint64(1))
LEN_MULT = np.uint64(0x9E3779B97F4A7C15)
_CHAR_MULT_BYTES = CHAR_MULT.astype("<u8").tobytes()


def is_unspaced(char: str) -> bool:
    return bool(_UNSPACED.match(char))


def words(text: str) -> list[str]:
    """The quality rules' words (see the module's docstring); the reference for `_textscan`'s counts."""
    out: list[str] = []
    inside = unspaced = False
    for c in text:
        if c.isspace():
            inside = False
            continue
        u = c.isalnum() and is_unspaced(c)
        if not inside or u or (unspaced and c.isalnum()):
            out.append(c)
            inside, unspaced = True, u
        else:
            out[-1] += c
    return out


def tokens(text: str) -> list[str]:
    """Lower-cased runs of \\w, each letter of an unspaced script a token of its own."""
    return _TOKEN.findall(text.lower())


def word_hashes(toks: list[str]) -> np.ndarray:
    """uint64 hash per token from its code points (vectorised; no Python call per token)."""
    if not toks:
        return np.zeros(0, dtype=np.uint64)
    arr = np.array(toks, dtype=f"<U{WORD_CHARS}")
    codes = arr.view(np.uint32).reshape(len(toks), WORD_CHARS).astype(np.uint64)
    lengths = np.fromiter(map(len, toks), dtype=np.uint64, count=len(toks))
    with np.errstate(over="ignore"):
        return (codes * CHAR_MULT).sum(axis=1, dtype=np.uint64) + lengths * LEN_MULT


def token_hashes(text: str) -> np.ndarray:
    """`word_hashes(tokens(text))`, computed in one pass in C without making the tokens."""
    return np.frombuffer(_textscan.token_hashes(text.lower(), _CHAR_MULT_BYTES, int(LEN_MULT)), dtype="<u8")


def ngram_hashes(token_h: np.ndarray, n: int, mult: np.ndarray = GRAM_MULT) -> np.ndarray:
    """uint64 hash of every n consecutive tokens (their hashes, position-weighted)."""
    k = len(token_h) - n + 1
    if k <= 0:
        return np.zeros(0, dtype=np.uint64)
    acc = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            acc += token_h[j: j + k] * mult[j]
    return acc


def windows(text: str, max_chars: int, n: int) -> list[str]:
    """Up to `n` windows of `max_chars` characters spread evenly across the text, the first at its start and the
    last at its end: a model reads the whole document, not its head (a source file opens with its licence, a
    Japanese manual page with an English paragraph)."""
    if n <= 1 or len(text) <= max_chars:
        return [text[:max_chars]]
    k = min(n, -(-len(text) // max_chars))
    span = len(text) - max_chars
    return [text[(start := round(i * span / (k - 1))):start + max_chars] for i in range(k)]

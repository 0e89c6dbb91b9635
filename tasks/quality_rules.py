"""Heuristic quality rules: small named functions, thresholds from the papers that introduced them.

A rule takes a `Doc` (text plus lazily computed words, lines and n-gram statistics) and keyword
thresholds, and returns True to keep or `(False, detail)` to drop; the rule's name is the reject reason.
Sources (defaults as published, and as datatrove implements them):
- Gopher quality and repetition: Rae et al. 2021, "Scaling Language Models", appendix A.
- C4: Raffel et al. 2020, section 2.2.
- FineWeb: Penedo et al. 2024, section 3.3 (the three FineWeb filters).
- Code: Chen et al. 2021 (Codex) and Li et al. 2023 (StarCoder data): line lengths, alphanumeric share.
Which rules run on a document depends on its domain (config `classify.rules`): prose rules do not judge code.
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Callable, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RuleResult = Union[bool, tuple[bool, str]]
Rule = Callable[..., RuleResult]

# Gopher's eight English stop words, and the same kind of function words for the languages lid sees most here;
# a language without a list is not judged by this rule.
STOP_WORDS = {
    "en": frozenset({"the", "be", "to", "of", "and", "that", "have", "with"}),
    "fr": frozenset({"le", "la", "les", "de", "et", "que", "des", "est", "avec", "pour"}),
    "de": frozenset({"der", "die", "das", "und", "zu", "den", "mit", "ist", "nicht", "von"}),
    "es": frozenset({"el", "la", "de", "que", "y", "los", "con", "es", "por", "para"}),
}
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "»", "。", "！", "？", ":", ";")
C4_TERMINAL = (".", "!", "?", '"', "”")
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "⁃", "-", "*", "–", "—")
_U64 = np.uint64


_SPACE, _LETTER, _ALNUM = 1, 2, 4
_TABLE_LIMIT = 0x30000  # code points above (rare planes) count as letters


@functools.lru_cache(maxsize=1)
def _char_classes() -> np.ndarray:
    """Per code point: whitespace, letter, alphanumeric bits, as str.isspace/isalpha/isalnum say (built once)."""
    chars = [chr(i) for i in range(_TABLE_LIMIT + 1)]
    table = np.fromiter(map(str.isspace, chars), np.uint8, len(chars)) * _SPACE
    table |= np.fromiter(map(str.isalpha, chars), np.uint8, len(chars)) * _LETTER
    table |= np.fromiter(map(str.isalnum, chars), np.uint8, len(chars)) * _ALNUM
    table[_TABLE_LIMIT] = _LETTER | _ALNUM
    return table


class Doc:
    """One document's text and the statistics rules share, each computed at most once.

    Character and word statistics come from one numpy pass over the code points (words are what
    str.split() gives); n-gram statistics from hash-encoded word ids, so no rule loops over words in Python."""

    def __init__(self, text: str, lang: str = "en"):
        self.text = text
        self.lang = lang

    @functools.cached_property
    def char_classes(self) -> np.ndarray:
        cps = np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return np.take(_char_classes(), cps, mode="clip")  # beyond the table: its last entry, a letter

    @functools.cached_property
    def _word_stats(self) -> tuple[np.ndarray, int]:
        cls = self.char_classes
        inside = (cls & _SPACE) == 0
        starts = inside.copy()
        starts[1:] &= ~inside[:-1]
        word_of = np.cumsum(starts) - 1
        n = int(starts.sum())
        lens = np.bincount(word_of[inside], minlength=n)
        with_letter = int(np.count_nonzero(np.bincount(word_of[inside & ((cls & _LETTER) > 0)], minlength=n)))
        return lens, with_letter

    @property
    def n_words(self) -> int:
        return len(self._word_stats[0])

    @property
    def word_lens(self) -> np.ndarray:
        return self._word_stats[0]

    @property
    def words_with_letter(self) -> int:
        return self._word_stats[1]

    @functools.cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @functools.cached_property
    def lines(self) -> list[str]:
        return [s for s in (ln.strip() for ln in self.text.split("\n")) if s]

    @functools.cached_property
    def paragraphs(self) -> list[str]:
        # split at blank lines ("\n\n" and longer runs): the pieces of a longer run strip to nothing
        return [s for s in (p.strip() for p in self.text.split("\n\n")) if s]

    def ngram_keys(self, n: int) -> np.ndarray:
        """A 64-bit key per n-gram position: a polynomial over the words' str hashes (collisions negligible).
        Built from the (n-1)-gram keys, so asking for n = 5, 6, ... 10 in turn costs one pass each."""
        cache = self.__dict__.setdefault("_ngram_cache", {})
        if n not in cache:
            if n == 1:
                cache[n] = np.fromiter(map(hash, self.words), dtype=np.int64, count=len(self.words)).view(_U64)
            else:
                prev, ids = self.ngram_keys(n - 1), self.ngram_keys(1)
                with np.errstate(over="ignore"):
                    cache[n] = prev[:-1] * _U64(1_000_003) + ids[n - 1:]
        return cache[n]

    def ngram_groups(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the distinct n-grams: (occurrence counts, first positions), and per position whether it repeats
        an n-gram seen earlier. A stable sort for short documents; Arrow's hash encoding (linear, but with a
        fixed cost of about 0.1 ms) for long ones."""
        cache = self.__dict__.setdefault("_group_cache", {})
        if n in cache:
            return cache[n]
        keys = self.ngram_keys(n)
        if len(keys) < 4000:
            order = np.argsort(keys, kind="stable")  # stable: each group's earliest position sorts first
            s = keys[order]
            starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
            counts = np.diff(np.append(starts, len(s)))
            firsts = order[starts]
            later = np.ones(len(keys), dtype=bool)
            later[firsts] = False
        else:
            ids = np.asarray(pc.dictionary_encode(pa.array(keys)).indices, dtype=np.int64)  # first-appearance order
            later = np.empty(len(ids), dtype=bool)
            later[:1] = False
            later[1:] = ids[1:] <= np.maximum.accumulate(ids)[:-1]
            counts = np.bincount(ids)
            firsts = np.flatnonzero(~later)
        cache[n] = counts, firsts, later
        return cache[n]


def _frac(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# ---- Gopher quality (Rae et al. 2021) -------------------------------------------------------------

def gopher_word_count(doc: Doc, min_words: int = 50, max_words: int = 100_000) -> RuleResult:
    n = doc.n_words
    return min_words <= n <= max_words or (False, f"{n} words, allowed {min_words}..{max_words}")


def gopher_mean_word_length(doc: Doc, min_len: float = 3.0, max_len: float = 10.0) -> RuleResult:
    mean = float(doc.word_lens.mean()) if doc.n_words else 0.0
    return min_len <= mean <= max_len or (False, f"mean word length {mean:.1f}, allowed {min_len}..{max_len}")


def gopher_symbol_ratio(doc: Doc, max_ratio: float = 0.1) -> RuleResult:
    symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("…")
    r = _frac(symbols, doc.n_words)
    return r <= max_ratio or (False, f"symbol-to-word ratio {r:.2f} > {max_ratio}")


def gopher_bullet_lines(doc: Doc, max_ratio: float = 0.9) -> RuleResult:
    r = _frac(sum(ln.startswith(BULLETS) for ln in doc.lines), len(doc.lines))
    return r <= max_ratio or (False, f"{r:.0%} of lines start with a bullet > {max_ratio:.0%}")


def gopher_ellipsis_lines(doc: Doc, max_ratio: float = 0.3) -> RuleResult:
    r = _frac(sum(ln.endswith(("...", "…")) for ln in doc.lines), len(doc.lines))
    return r <= max_ratio or (False, f"{r:.0%} of lines end in an ellipsis > {max_ratio:.0%}")


def gopher_alpha_words(doc: Doc, min_ratio: float = 0.8) -> RuleResult:
    r = _frac(doc.words_with_letter, doc.n_words)
    return r >= min_ratio or (False, f"{r:.0%} of words have a letter < {min_ratio:.0%}")


@functools.lru_cache(maxsize=None)
def _stop_word_pattern(lang: str) -> re.Pattern | None:
    words = STOP_WORDS.get(lang)
    return re.compile(r"\b(?:" + "|".join(sorted(words)) + r")\b", re.IGNORECASE) if words else None


def gopher_stop_words(doc: Doc, min_count: int = 2) -> RuleResult:
    pattern = _stop_word_pattern(doc.lang)
    if pattern is None:
        return True
    n = 0
    for _ in pattern.finditer(doc.text):
        n += 1
        if n >= min_count:
            return True
    return False, f"{n} stop words ({doc.lang}) < {min_count}"


# ---- Gopher repetition --------------------------------------------------------------------------

def _duplicate_share(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats)."""
    seen: set[str] = set()
    dup_n = dup_chars = 0
    for it in items:
        if it in seen:
            dup_n += 1
            dup_chars += len(it)
        else:
            seen.add(it)
    return _frac(dup_n, len(items)), _frac(dup_chars, sum(map(len, items)))


def gopher_duplicate_lines(doc: Doc, max_frac: float = 0.3, max_char_frac: float = 0.2) -> RuleResult:
    n, c = _duplicate_share(doc.lines)
    if n > max_frac:
        return False, f"{n:.0%} of lines are duplicates > {max_frac:.0%}"
    return c <= max_char_frac or (False, f"{c:.0%} of line characters are in duplicates > {max_char_frac:.0%}")


def gopher_duplicate_paragraphs(doc: Doc, max_frac: float = 0.3, max_char_frac: float = 0.2) -> RuleResult:
    n, c = _duplicate_share(doc.paragraphs)
    if n > max_frac:
        return False, f"{n:.0%} of paragraphs are duplicates > {max_frac:.0%}"
    return c <= max_char_frac or (False, f"{c:.0%} of paragraph characters in duplicates > {max_char_frac:.0%}")


def gopher_top_ngrams(doc: Doc, limits: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))) -> RuleResult:
    """Share of characters taken by the most frequent n-gram (all its occurrences), n = 2..4."""
    total = float(doc.word_lens.sum())
    cum = None
    for n, limit in limits:
        if doc.n_words < n or not total:
            continue
        counts, firsts, _ = doc.ngram_groups(n)
        top = int(counts.max())
        if top < 2:
            continue
        # several n-grams may share the top count: take the longest, so the answer never depends on hash order
        if cum is None:
            cum = np.concatenate(([0], np.cumsum(doc.word_lens)))
        tied = firsts[counts == top]
        share = int((cum[tied + n] - cum[tied]).max()) * top / total
        if share > limit:
            return False, f"the most frequent {n}-gram covers {share:.0%} of characters > {limit:.0%}"
    return True


def gopher_duplicate_ngrams(doc: Doc, limits: tuple[tuple[int, float], ...] = (
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))) -> RuleResult:
    """Share of characters inside repeats (second and later occurrences) of n-grams, n = 5..10."""
    total = float(doc.word_lens.sum())
    floor = min(limit for _, limit in limits)
    for n, limit in sorted(limits):
        if doc.n_words < n or not total:
            return True
        starts = np.flatnonzero(doc.ngram_groups(n)[2])
        covered = np.zeros(doc.n_words + 1, dtype=np.int32)  # each word counted once however often covered
        np.add.at(covered, starts, 1)
        np.add.at(covered, starts + n, -1)
        share = int(doc.word_lens[np.cumsum(covered[:-1]) > 0].sum()) / total
        if share > limit:
            return False, f"repeated {n}-grams cover {share:.0%} of characters > {limit:.0%}"
        if share <= floor:
            return True  # coverage only shrinks as n grows: no longer n-gram can fail
    return True


# ---- C4 (Raffel et al. 2020) --------------------------------------------------------------------

def c4_curly_brace(doc: Doc) -> RuleResult:
    return "{" not in doc.text or (False, "contains a curly brace")


def c4_lorem_ipsum(doc: Doc) -> RuleResult:
    if "psum" not in doc.text and "PSUM" not in doc.text:  # cheap gate before lower-casing the whole text
        return True
    return "lorem ipsum" not in doc.text.lower() or (False, "contains lorem ipsum")


def c4_min_sentences(doc: Doc, min_lines: int = 3, min_words: int = 5) -> RuleResult:
    """C4 keeps lines of at least 5 words that end in terminal punctuation, and pages with 3 of them."""
    n = sum(1 for ln in doc.lines if ln.endswith(C4_TERMINAL) and len(ln.split()) >= min_words)
    return n >= min_lines or (False, f"{n} lines end a sentence < {min_lines}")


# ---- FineWeb (Penedo et al. 2024) ---------------------------------------------------------------

def fineweb_line_punctuation(doc: Doc, min_ratio: float = 0.12) -> RuleResult:
    r = _frac(sum(ln.endswith(TERMINAL_PUNCT) for ln in doc.lines), len(doc.lines))
    return r >= min_ratio or (False, f"{r:.0%} of lines end in punctuation < {min_ratio:.0%}")


def fineweb_short_lines(doc: Doc, max_ratio: float = 0.67, short_chars: int = 30) -> RuleResult:
    r = _frac(sum(len(ln) <= short_chars for ln in doc.lines), len(doc.lines))
    return r <= max_ratio or (False, f"{r:.0%} of lines are {short_chars} chars or shorter > {max_ratio:.0%}")


def fineweb_duplicate_line_chars(doc: Doc, max_ratio: float = 0.1) -> RuleResult:
    _, c = _duplicate_share(doc.lines)
    return c <= max_ratio or (False, f"{c:.0%} of characters are in duplicated lines > {max_ratio:.0%}")


# ---- Code (Codex; StarCoder) --------------------------------------------------------------------

def code_max_line_length(doc: Doc, max_chars: int = 1000) -> RuleResult:
    longest = max((len(ln) for ln in doc.text.split("\n")), default=0)
    return longest <= max_chars or (False, f"a line of {longest} chars > {max_chars}")


def code_mean_line_length(doc: Doc, max_mean: float = 100.0) -> RuleResult:
    lines = doc.text.split("\n")
    mean = len(doc.text) / max(1, len(lines))
    return mean <= max_mean or (False, f"mean line length {mean:.0f} > {max_mean:.0f}")


def code_alnum_fraction(doc: Doc, min_frac: float = 0.25) -> RuleResult:
    r = _frac(int(np.count_nonzero(doc.char_classes & _ALNUM)), len(doc.text))
    return r >= min_frac or (False, f"{r:.0%} alphanumeric characters < {min_frac:.0%}")


RULES: dict[str, Rule] = {f.__name__: f for f in (
    gopher_word_count, gopher_mean_word_length, gopher_symbol_ratio, gopher_bullet_lines, gopher_ellipsis_lines,
    gopher_alpha_words, gopher_stop_words, gopher_duplicate_lines, gopher_duplicate_paragraphs, gopher_top_ngrams,
    gopher_duplicate_ngrams, c4_curly_brace, c4_lorem_ipsum, c4_min_sentences, fineweb_line_punctuation,
    fineweb_short_lines, fineweb_duplicate_line_chars, code_max_line_length, code_mean_line_length,
    code_alnum_fraction,
)}


class RuleConfigError(ValueError):
    """A rule name or parameter in the config that does not exist."""


class RuleSet:
    """The rules of each domain, in order, with their parameters: `first_failure(text, domain)`."""

    def __init__(self, by_domain: dict[str, list[str]], params: dict[str, dict] | None = None):
        params = params or {}
        for name in params:
            if name not in RULES:
                raise RuleConfigError(f"classify.rule_params.{name}: no such rule (known: {', '.join(RULES)})")
        self._by_domain: dict[str, list[tuple[str, Callable[[Doc], RuleResult]]]] = {}
        for domain, names in by_domain.items():
            bound = []
            for name in names:
                if name not in RULES:
                    raise RuleConfigError(f"classify.rules.{domain}: no rule named {name!r} (known: {', '.join(RULES)})")
                kwargs = params.get(name, {})
                try:
                    functools.partial(RULES[name], Doc(""), **kwargs)()
                except TypeError as err:
                    raise RuleConfigError(f"classify.rule_params.{name}: {err}") from None
                bound.append((name, functools.partial(RULES[name], **kwargs)))
            self._by_domain[domain] = bound

    def rules_for(self, domain: str) -> list[str]:
        return [name for name, _ in self._by_domain.get(domain, self._by_domain.get("default", []))]

    def first_failure(self, text: str, domain: str, lang: str = "en") -> tuple[str, str] | None:
        """(rule name, detail) of the first rule the text fails under its domain's rules, or None."""
        doc = Doc(text, lang)
        for name, rule in self._by_domain.get(domain, self._by_domain.get("default", [])):
            res = rule(doc)
            if res is not True:
                return name, res[1] if isinstance(res, tuple) else "failed"
        return None


def count_failures(results: list[tuple[str, str] | None]) -> Counter:
    return Counter(r[0] for r in results if r is not None)

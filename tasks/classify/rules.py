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
from collections import Counter
from typing import Callable, Union

from curate.tasks.text import _textscan
from curate.tasks.text.words import CLOSERS, FULL_STOPS

RuleResult = Union[bool, tuple[bool, str]]
Rule = Callable[..., RuleResult]

# Gopher's eight English stop words, and the same kind of function words for the languages lid sees most here;
# a language without a list (Thai: its function words are several letters, and letters are its tokens) is not
# judged by this rule.
STOP_WORDS = {
    "en": ("the", "be", "to", "of", "and", "that", "have", "with"),
    "fr": ("le", "la", "les", "de", "et", "que", "des", "est", "avec", "pour"),
    "de": ("der", "die", "das", "und", "zu", "den", "mit", "ist", "nicht", "von"),
    "es": ("el", "la", "de", "que", "y", "los", "con", "es", "por", "para"),
    # a Han or kana letter is a token of its own (tasks/text/words.py): the particles and function characters
    "zh": ("的", "了", "是", "在", "和", "有", "不", "这", "也", "就"),
    "ja": ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し"),
    "ko": ("수", "있습니다", "이", "있는", "또는", "경우", "및", "모든", "대한", "다른", "때", "합니다", "않습니다", "같은",
           "그", "것", "등", "할", "하는", "위해"),
}
TERMINAL_PUNCT = (*FULL_STOPS, *CLOSERS, ":", ";")  # a line that ends a sentence, in every script (FineWeb's)
C4_TERMINAL = (".", "!", "?", '"', "”", "。", "！", "？")
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "⁃", "-", "*", "–", "—")


def _word_stat(i: int, doc: str = "") -> property:
    """One of `Doc._word_stats`, read as an attribute."""
    return property(lambda self: self._word_stats[i], doc=doc)


class Doc:
    """One document's text and the statistics rules share, each computed at most once.

    The statistics come from `tasks._textscan` (C, one pass each; its docstrings give the Python expression
    each one equals): words are what str.split() gives, lines and paragraphs what split("\n") and
    split("\n\n") give after strip(), empty ones dropped."""

    def __init__(self, text: str, lang: str = "en"):
        self.text = text
        self.lang = lang

    @functools.cached_property
    def _word_stats(self) -> tuple[int, int, int, int, int, int, int]:
        # (words, characters in words, words with a letter, alnum chars, Gopher symbols, and the words that are a
        # Han, Kana or Thai letter and their characters)
        return _textscan.word_stats(self.text)

    n_words = _word_stat(0)
    word_chars = _word_stat(1)
    words_with_letter = _word_stat(2)
    alnum_chars = _word_stat(3)
    symbols = _word_stat(4, """text.count("#") + text.count("...") + text.count("…")""")
    unspaced_words = _word_stat(5, "words that are a letter of an unspaced script (Han, Kana, Thai, ...)")
    unspaced_chars = _word_stat(6)

    def line_counts(self, short_chars: int = 30, c4_min_words: int = 5) -> tuple[int, int, int, int, int, int]:
        """(lines, bullet starts, ellipsis ends, terminal-punctuation ends, C4 sentences, short lines)."""
        cache = self.__dict__.setdefault("_line_cache", {})
        key = (short_chars, c4_min_words)
        if key not in cache:
            cache[key] = _textscan.line_counts(self.text, _BULLET_CHARS, _TERMINAL_CHARS, _C4_CHARS, short_chars,
                                               c4_min_words)
        return cache[key]

    @functools.cached_property
    def duplicate_lines(self) -> tuple[int, int, int, int]:
        """(lines, lines repeating an earlier one, characters, characters in repeats)."""
        return _textscan.duplicates(self.text, False)

    @functools.cached_property
    def duplicate_paragraphs(self) -> tuple[int, int, int, int]:
        return _textscan.duplicates(self.text, True)


_BULLET_CHARS, _TERMINAL_CHARS, _C4_CHARS = "".join(BULLETS), "".join(TERMINAL_PUNCT), "".join(C4_TERMINAL)
assert all(len(c) == 1 for c in BULLETS + TERMINAL_PUNCT + C4_TERMINAL)  # line_counts tests single characters


def _frac(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# ---- Gopher quality (Rae et al. 2021) -------------------------------------------------------------

def gopher_word_count(doc: Doc, min_words: int = 50, max_words: int = 100_000) -> RuleResult:
    n = doc.n_words
    return min_words <= n <= max_words or (False, f"{n} words, allowed {min_words}..{max_words}")


def gopher_mean_word_length(doc: Doc, min_len: float = 3.0, max_len: float = 10.0) -> RuleResult:
    """Over the words of spaced scripts: a Han or Kana letter is a word by definition (tasks/text/words.py) and its
    length says nothing. A page mostly in such letters is not judged (the Latin words in a Chinese page are names,
    paths and commands); an English page with a few Han letters is judged by its English words."""
    spaced = doc.n_words - doc.unspaced_words
    if spaced <= doc.unspaced_words:
        return True
    mean = (doc.word_chars - doc.unspaced_chars) / spaced
    return min_len <= mean <= max_len or (False, f"mean word length {mean:.1f}, allowed {min_len}..{max_len}")


def gopher_symbol_ratio(doc: Doc, max_ratio: float = 0.1) -> RuleResult:
    r = _frac(doc.symbols, doc.n_words)
    return r <= max_ratio or (False, f"symbol-to-word ratio {r:.2f} > {max_ratio}")


def gopher_bullet_lines(doc: Doc, max_ratio: float = 0.9) -> RuleResult:
    lines, bullets, *_ = doc.line_counts()
    r = _frac(bullets, lines)
    return r <= max_ratio or (False, f"{r:.0%} of lines start with a bullet > {max_ratio:.0%}")


def gopher_ellipsis_lines(doc: Doc, max_ratio: float = 0.3) -> RuleResult:
    lines, _, ellipses, *_ = doc.line_counts()
    r = _frac(ellipses, lines)
    return r <= max_ratio or (False, f"{r:.0%} of lines end in an ellipsis > {max_ratio:.0%}")


def gopher_alpha_words(doc: Doc, min_ratio: float = 0.8) -> RuleResult:
    r = _frac(doc.words_with_letter, doc.n_words)
    return r >= min_ratio or (False, f"{r:.0%} of words have a letter < {min_ratio:.0%}")


def gopher_stop_words(doc: Doc, min_count: int = 2) -> RuleResult:
    words = STOP_WORDS.get(doc.lang)
    if words is None:
        return True
    n = _textscan.count_words(doc.text, words, min_count)  # whole words, ASCII case ignored; stops at min_count
    return n >= min_count or (False, f"{n} stop words ({doc.lang}) < {min_count}")


# ---- Gopher repetition --------------------------------------------------------------------------

def _shares(counts: tuple[int, int, int, int]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats)."""
    items, repeated, chars, repeated_chars = counts
    return _frac(repeated, items), _frac(repeated_chars, chars)


def gopher_duplicate_lines(doc: Doc, max_frac: float = 0.3, max_char_frac: float = 0.2) -> RuleResult:
    n, c = _shares(doc.duplicate_lines)
    if n > max_frac:
        return False, f"{n:.0%} of lines are duplicates > {max_frac:.0%}"
    return c <= max_char_frac or (False, f"{c:.0%} of line characters are in duplicates > {max_char_frac:.0%}")


def gopher_duplicate_paragraphs(doc: Doc, max_frac: float = 0.3, max_char_frac: float = 0.2) -> RuleResult:
    n, c = _shares(doc.duplicate_paragraphs)
    if n > max_frac:
        return False, f"{n:.0%} of paragraphs are duplicates > {max_frac:.0%}"
    return c <= max_char_frac or (False, f"{c:.0%} of paragraph characters in duplicates > {max_char_frac:.0%}")


def gopher_top_ngrams(doc: Doc, limits: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))) -> RuleResult:
    """Share of characters taken by the most frequent n-gram (all its occurrences), n = 2..4. Where several
    n-grams share the top count the longest counts, so the answer never depends on hash order."""
    total = doc.word_chars
    limits = [(n, limit) for n, limit in limits if n <= doc.n_words]
    if not total or not limits:
        return True
    for (n, limit), (top, chars) in zip(limits, _textscan.top_ngrams(doc.text, tuple(n for n, _ in limits))):
        share = chars * top / total
        if top >= 2 and share > limit:
            return False, f"the most frequent {n}-gram covers {share:.0%} of characters > {limit:.0%}"
    return True


def gopher_duplicate_ngrams(doc: Doc, limits: tuple[tuple[int, float], ...] = (
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))) -> RuleResult:
    """Share of characters inside repeats (second and later occurrences) of n-grams, n = 5..10."""
    floor = min(limit for _, limit in limits)
    for n, limit in sorted(limits):
        if doc.n_words < n or not doc.word_chars:
            return True
        covered, total = _textscan.repeated_ngram_chars(doc.text, n)
        share = covered / total
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
    n = doc.line_counts(c4_min_words=min_words)[4]
    return n >= min_lines or (False, f"{n} lines end a sentence < {min_lines}")


# ---- FineWeb (Penedo et al. 2024) ---------------------------------------------------------------

def fineweb_line_punctuation(doc: Doc, min_ratio: float = 0.12) -> RuleResult:
    lines, _, _, terminal, *_ = doc.line_counts()
    r = _frac(terminal, lines)
    return r >= min_ratio or (False, f"{r:.0%} of lines end in punctuation < {min_ratio:.0%}")


def fineweb_short_lines(doc: Doc, max_ratio: float = 0.67, short_chars: int = 30) -> RuleResult:
    counts = doc.line_counts(short_chars=short_chars)
    r = _frac(counts[5], counts[0])
    return r <= max_ratio or (False, f"{r:.0%} of lines are {short_chars} chars or shorter > {max_ratio:.0%}")


def fineweb_duplicate_line_chars(doc: Doc, max_ratio: float = 0.1) -> RuleResult:
    _, c = _shares(doc.duplicate_lines)
    return c <= max_ratio or (False, f"{c:.0%} of characters are in duplicated lines > {max_ratio:.0%}")


# ---- Code (Codex; StarCoder) --------------------------------------------------------------------

def code_max_line_length(doc: Doc, max_chars: int = 1000) -> RuleResult:
    longest = _textscan.longest_line(doc.text)
    return longest <= max_chars or (False, f"a line of {longest} chars > {max_chars}")


def code_mean_line_length(doc: Doc, max_mean: float = 100.0) -> RuleResult:
    mean = len(doc.text) / (doc.text.count("\n") + 1)
    return mean <= max_mean or (False, f"mean line length {mean:.0f} > {max_mean:.0f}")


def code_alnum_fraction(doc: Doc, min_frac: float = 0.25) -> RuleResult:
    r = _frac(doc.alnum_chars, len(doc.text))
    return r >= min_frac or (False, f"{r:.0%} alphanumeric characters < {min_frac:.0%}")


RULES: dict[str, Rule] = {f.__name__: f for f in (
    gopher_word_count, gopher_mean_word_length, gopher_symbol_ratio, gopher_bullet_lines, gopher_ellipsis_lines,
    gopher_alpha_words, gopher_stop_words, gopher_duplicate_lines, gopher_duplicate_paragraphs, gopher_top_ngrams,
    gopher_duplicate_ngrams, c4_curly_brace, c4_lorem_ipsum, c4_min_sentences, fineweb_line_punctuation,
    fineweb_short_lines, fineweb_duplicate_line_chars, code_max_line_length, code_mean_line_length,
    code_alnum_fraction,
)}


_PROBE = Doc(" ".join(["the quick brown fox jumps over the lazy dog."] * 4) + "\n- {lorem ipsum}...\n" * 3)


class RuleConfigError(ValueError):
    """A rule name or parameter in the config that does not exist."""


class RuleSet:
    """The rules of each domain, in order, with their parameters, and each language's thresholds over them:
    `first_failure(text, domain, lang)`."""

    def __init__(self, by_domain: dict[str, list[str]], params: dict[str, dict] | None = None,
                 lang_params: dict[str, dict[str, dict]] | None = None):
        self._params = params or {}
        self._lang_params = lang_params or {}
        for where, table in (("rule_params", self._params),
                             *((f"lang_rule_params.{k}", v) for k, v in self._lang_params.items())):
            for name in table:
                if name not in RULES:
                    raise RuleConfigError(f"classify.{where}.{name}: no such rule (known: {', '.join(RULES)})")
        for domain, names in by_domain.items():
            for name in names:
                if name not in RULES:
                    raise RuleConfigError(f"classify.rules.{domain}: no rule named {name!r} (known: {', '.join(RULES)})")
        self._names = by_domain
        self._by_key: dict[tuple[str, str], list[tuple[str, Callable[[Doc], RuleResult]]]] = {}
        for lang in ("", *self._lang_params):  # every parameter tried now, so a bad one fails here, not mid-run
            for domain in by_domain:
                self._bound(domain, lang)

    def _bound(self, domain: str, lang: str = "") -> list[tuple[str, Callable[[Doc], RuleResult]]]:
        domain = domain if domain in self._names else "default"
        lang = lang if lang in self._lang_params else ""
        if (domain, lang) not in self._by_key:
            self._by_key[domain, lang] = [(name, self._bind(name, lang)) for name in self._names.get(domain, [])]
        return self._by_key[domain, lang]

    def _bind(self, name: str, lang: str) -> Callable[[Doc], RuleResult]:
        kwargs = {**self._params.get(name, {}), **self._lang_params.get(lang, {}).get(name, {})}
        try:  # on a text long enough for every branch
            functools.partial(RULES[name], _PROBE, **kwargs)()
        except (TypeError, ValueError) as err:
            where = f"lang_rule_params.{lang}" if name in self._lang_params.get(lang, {}) else "rule_params"
            raise RuleConfigError(f"classify.{where}.{name}: {err}") from None
        return functools.partial(RULES[name], **kwargs)

    def rules_for(self, domain: str | tuple[str, ...]) -> list[str]:
        """The rules that judge a document of this domain; of several domains, only the rules every one of them
        has (a document that may be any of them is judged by nothing written for just one kind of text)."""
        domains = (domain,) if isinstance(domain, str) else domain
        shared = set.intersection(*({name for name, _ in self._bound(d)} for d in domains))
        return [name for name, _ in self._bound(domains[0]) if name in shared]

    def first_failure(self, text: str, domain: str | tuple[str, ...], lang: str = "en") -> tuple[str, str] | None:
        """(rule name, detail) of the first rule the text fails under its domain's rules (or the rules its
        possible domains share), with its language's thresholds, or None."""
        doc = Doc(text, lang)
        names = set(self.rules_for(domain))
        for name, rule in self._bound(domain if isinstance(domain, str) else domain[0], lang):
            if name not in names:
                continue
            res = rule(doc)
            if res is not True:
                return name, res[1] if isinstance(res, tuple) else "failed"
        return None


def count_failures(results: list[tuple[str, str] | None]) -> Counter:
    return Counter(r[0] for r in results if r is not None)

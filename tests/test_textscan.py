"""The C statistics (tasks/text/_textscan.c) equal the Python expressions their docstrings name, on real documents
from every shared corpus and on edge cases written to break them."""
import gzip
import itertools
import re

import orjson
import pytest

from curate.tasks.text import _textscan
from curate.tasks.text.normalize import normalize_text
from curate.tasks.classify.rules import BULLETS, C4_TERMINAL, STOP_WORDS, TERMINAL_PUNCT
from curate.tasks.text import words as W
from tests.conftest import REPO

EDGES = [
    "", " ", "\n", "\n\n\n", "a", "  indented\n\n\n\n\n\nafter  \t\n\n", "\r\n\r\nx\ry\r\n", "\t \n \t\nz",
    "a\x00b\x1fc\x7f\x85d\u200be\ufeff", "nbsp\xa0\nline sep\u2028x\u3000", "\xa0\n\xa0", "ﬁ ǅ Σ 𝔘𝔫𝔦 😀 x",
    "the THE The_ them théy be,to;of\nand-that have\twith", "... …\n- item\n• bullet\n*\n", "\n\n\n\n",
    "a b a b a b a b", "x " * 50, "tel 555-123-4567, 10.0.0.1, 4111 1111 1111 1111; ٣٤٥٦٧٨٩٠١ 1.2.3 12 34 56 78",
    "12345678", "1234567", "(555) 123 4567)", "1 2 3 4 5 6 7 8 9 0 . . .", "x.... y...... z.. #...# ##.\n...",
    "使用Linux系统的用户。的的 了", "ภาษาไทย ที่ และ", "한국어 텍스트 및 또는", "カタカナー・ひらがな、漢字。", "𠀀𠀁 x𠀂y",
    "ＡＢＣ１２３ ｶﾀｶﾅ", "ༀ ၀၁ ក្ខ", "中文 text 中文text中文.",
]


@pytest.fixture(scope="module")
def texts(shared_corpora):
    out = list(EDGES)
    for src in sorted(shared_corpora.glob("*.jsonl.gz")):
        with gzip.open(src, "rb") as f:
            out += [orjson.loads(line)["text"] for line in itertools.islice(f, 150)]
    for src in sorted((REPO / "data" / "multilingual").glob("*.jsonl.gz")):  # Chinese, Japanese, Korean
        with gzip.open(src, "rb") as f:
            out += [orjson.loads(line)["text"] for line in itertools.islice(f, 60)]
    return out


def _reference_normalize(text: str) -> str:
    # the Python this replaced (after NFC), step by step
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    drop = [c for c in range(0x20) if c not in (9, 10)] + list(range(0x7F, 0xA0)) + [0x200B, 0xFEFF]
    text = text.translate(dict.fromkeys(drop))
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n\n", text).rstrip()
    return re.sub(r"\A(?:[ \t]*\n)+", "", text)


def _pieces(text: str, sep: str) -> list[str]:
    return [s for s in (p.strip() for p in text.split(sep)) if s]


def test_normalize_equals_the_python_steps(texts):
    for t in texts:
        t = t[:3000] + "\r\n \t\n\n\n\n\x0c" + t[3000:6000]
        assert _textscan.normalize(t) == _reference_normalize(t), t[:80]
    assert normalize_text("e\u0301te\u0301") == "été"  # NFC before the C pass


def test_word_and_line_statistics(texts):
    for t in texts:
        words = W.words(t)
        unspaced = [w for w in words if W.is_unspaced(w[0]) and w[0].isalnum()]
        assert _textscan.word_stats(t) == (len(words), sum(map(len, words)), sum(any(c.isalpha() for c in w) for w in words),
                                           sum(c.isalnum() for c in t), t.count("#") + t.count("...") + t.count("…"),
                                           len(unspaced), sum(map(len, unspaced)))
        lines = _pieces(t, "\n")
        expect = (len(lines), sum(ln.startswith(BULLETS) for ln in lines), sum(ln.endswith(("...", "…")) for ln in lines),
                  sum(ln.endswith(TERMINAL_PUNCT) for ln in lines),
                  sum(ln.endswith(C4_TERMINAL) and len(W.words(ln)) >= 5 for ln in lines), sum(len(ln) <= 30 for ln in lines))
        assert _textscan.line_counts(t, "".join(BULLETS), "".join(TERMINAL_PUNCT), "".join(C4_TERMINAL), 30, 5) == expect
        assert _textscan.longest_line(t) == max(len(ln) for ln in t.split("\n"))
        for sep, paragraphs in (("\n", False), ("\n\n", True)):
            items, seen, rep, rep_chars = _pieces(t, sep), set(), 0, 0
            for it in items:
                rep, rep_chars = rep + (it in seen), rep_chars + len(it) * (it in seen)
                seen.add(it)
            assert _textscan.duplicates(t, paragraphs) == (len(items), rep, sum(map(len, items)), rep_chars)


def test_stop_words_count_whole_tokens(texts):
    fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")  # ASCII case only
    for lang, words in STOP_WORDS.items():
        for t in texts:
            expect = sum(tok.translate(fold) in words for tok in W._TOKEN.findall(t))
            assert _textscan.count_words(t, words, 10**9) == expect, (lang, t[:80])
    assert _textscan.count_words("the the the", STOP_WORDS["en"], 2) == 2  # stops at the limit
    assert _textscan.count_words("我的书和你的", ("的", "和"), 10) == 3  # a Han letter is a token of its own


def test_tokens_and_their_hashes(texts):
    for t in texts:
        assert W.token_hashes(t).tolist() == W.word_hashes(W.tokens(t)).tolist(), t[:80]
    assert W.tokens("使用Linux系统。") == ["使", "用", "linux", "系", "统"]
    assert W.words("使用Linux系统。 end.") == ["使", "用", "Linux", "系", "统。", "end."]
    assert W.tokens("The café, naïve_x 42") == "the café naïve_x 42".split()  # spaced scripts: re's \w+, as before


def test_contains_any(texts):
    needles = ("AKIA", "ghp_", "xox", "-----BEGIN", "é", "the ")
    for t in texts:
        for k in range(len(needles)):
            assert _textscan.contains_any(t, needles[k:k + 2]) == any(n in t for n in needles[k:k + 2])


def test_ngram_statistics(texts):
    for t in texts[:400] + texts[-180:]:
        words = W.words(t)
        for n in (2, 3, 5):
            grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            counts = {}
            for g in grams:
                counts[g] = counts.get(g, 0) + 1
            top = max(counts.values(), default=0)
            longest = max((sum(map(len, g)) for g, c in counts.items() if c == top), default=0)
            assert _textscan.top_ngrams(t, (n,)) == [(top, longest)]
            covered, seen = [False] * len(words), set()
            for i, g in enumerate(grams):
                if g in seen:
                    covered[i:i + n] = [True] * n
                seen.add(g)
            assert _textscan.repeated_ngram_chars(t, n) == (sum(len(w) for w, c in zip(words, covered) if c),
                                                             sum(map(len, words)))


def test_digit_runs_are_the_regex_matches_that_could_hold_pii(texts):
    run = re.compile(r"\d[\d .()\-]{5,}\d")
    for t in texts:
        expect = [(m.start(), m.end()) for m in run.finditer(t)
                  if sum(c.isdecimal() for c in m.group()) >= 8 or m.group().count(".") >= 3]
        assert _textscan.digit_runs(t, 8, 3) == expect

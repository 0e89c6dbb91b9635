"""A structural signal, independent of the domain model: the share of a text's lines that are shaped like code.

A line is code-shaped when it ends the way statements and blocks end, carries an operator that prose does not
use, opens with a comment marker or a declaration keyword followed by code punctuation, or is a bracketed form.
Prose rules (Gopher, C4, FineWeb) never judge text whose share reaches `classify.code_shape`: those rules
measure words and sentences, and good code has few of either, whatever the domain model made of it.
"""
from __future__ import annotations

import re
from typing import Callable

from curate.tasks.text.words import FULL_STOPS

MAX_LINES = 100  # lines sampled, spread across the text: enough for a stable share, bounded per document

# What each pattern matches is written as one regular expression would say it; the checks are split so that most
# lines are settled by `in` and `endswith` (C speed) before a pattern is tried at every position of a line: the
# classify stage measures the shape of most documents, and this was a quarter of its time beyond the models.
_LITERAL_OPERATORS = ("==", "!=", ":=", "=>", "->", "&&", "||", "::", "+=", "-=", "<-", "${", "$(", "@{", "%{")
_BRACKET_OPERATOR = re.compile(r"[A-Za-z0-9_]\(\)|[A-Za-z0-9_]\[[A-Za-z0-9_]*\]|\)\s*\{")  # f(), a[i], ) {
_ASSIGNMENT = re.compile(r"\s*[A-Za-z0-9_.$@%>\-\[\]\"']+\s*=\s*\S")
_COMMENT = re.compile(r"^\s*(?:#!|#\s|#$|#include|//|/\*|\*\s|\*/|;;|--\s|@\w)")
_KEYWORD = re.compile(
    r"^\s*(?:def|class|return|import|from|elif|else|for|foreach|while|switch|case|try|except|catch|finally|func|fn|"
    r"let|const|var|function|package|use|my|our|sub|local|export|public|private|protected|static|struct|impl|enum|"
    r"interface|type|module|require|unless|until|then|fi|esac|done|do|begin|end|select|insert|create|alter|drop|"
    r"grant|declare|if)\b.*[(){}\[\];:=<>$@]")
_FORM = re.compile(r"\s*\(.*\)\s*$|\s*\((?:def|let|set|if|cond|lambda|when|unless|require|provide)|"
                   r"\s*(?:end|fi|done|esac|else|begin|end;|END)\s*$")  # forms and block ends, from the line's start
_CALL = re.compile(r"[A-Za-z0-9_.]\((?!s\))")  # a call: f(x), but not a plural "(s)"
_CODE_ENDS = tuple("{};([\\") + ("=>", "->")
# a line that ends with the second of these, with only spaces after the first: ") :", ", )", "{ }", "] ,"
_CODE_END_PAIRS = {":": ")", ")": ",", "}": "{", ",": "]"}


def _has_operator(s: str) -> bool:
    """An operator prose does not use: ==, ->, :: ..., f(), a[i], ") {", or an assignment opening the line."""
    return (any(op in s for op in _LITERAL_OPERATORS) or ("=" in s and _ASSIGNMENT.match(s) is not None)
            or (("(" in s or "[" in s or ")" in s) and _BRACKET_OPERATOR.search(s) is not None))


def _ends_like_code(s: str) -> bool:
    """Ends the way statements and blocks end ({ } ; ( [ \\ => ->), or with ") :", ", )", "{ }", "] ,"."""
    if s.endswith(_CODE_ENDS):
        return True
    first = _CODE_END_PAIRS.get(s[-1:])
    return first is not None and s[:-1].rstrip().endswith(first)


def _is_form(s: str) -> bool:
    return _FORM.match(s) is not None or ("(" in s and _CALL.search(s) is not None)


_SQL = re.compile(r"^\s*(?:SELECT|FROM|WHERE|AND|OR|JOIN|LEFT JOIN|GROUP BY|ORDER BY|HAVING|UNION|VALUES|RETURNS|"
                  r"LANGUAGE|AS|ON|SET|INSERT INTO|UPDATE|DELETE FROM|CREATE|ALTER|DROP|GRANT|REVOKE|COMMENT ON)\b")


# Identifiers, calls and assignments are ASCII in the languages measured here: a Han or Kana letter before "(" is
# prose ("页眉(格式 - 页面)"), and a sentence ends with a full stop of its script.
_PROSE_ENDS = (*FULL_STOPS, '"', "」", "』")


def _sample(lines: list[str], n: int) -> list[str]:
    if len(lines) <= n:
        return lines
    step = len(lines) / n
    return [lines[int(i * step)] for i in range(n)]


def is_code_line(line: str) -> bool:
    s = line.rstrip()
    operator = _has_operator(s)
    if s.endswith(_PROSE_ENDS) and not operator and not _COMMENT.match(s):
        return False  # a sentence, even one that starts with "for" or "if"
    return bool(operator or _ends_like_code(s) or _COMMENT.match(s) or _KEYWORD.match(s) or _is_form(s)
                or _SQL.match(s))


# A written sentence on a line of its own: a capital, then 50 or more characters with no code punctuation, a stop.
_SENTENCE_LINE = re.compile(r"[\s>*#-]*[A-Z][^{};=<>|\\]{50,}[.:?!]\s*$")


def is_sentence_line(line: str) -> bool:
    return _SENTENCE_LINE.match(line) is not None


def sampled_lines(text: str, max_lines: int = MAX_LINES) -> list[str]:
    """The non-empty lines a share is measured on: up to `max_lines` of them, spread across the text."""
    return _sample([ln for ln in text.splitlines() if ln.strip()], max_lines)


def share(lines: list[str], of: Callable[[str], bool]) -> float:
    return sum(map(of, lines)) / len(lines) if lines else 0.0


def code_shape(text: str, max_lines: int = MAX_LINES) -> float:
    """Share of the non-empty lines (up to `max_lines` of them, spread across the text) that are code-shaped."""
    return share(sampled_lines(text, max_lines), is_code_line)


def prose_share(text: str, max_lines: int = MAX_LINES) -> float:
    """Share of the non-empty lines (sampled as code_shape samples them) that are written sentences in a Latin
    script. Source files have next to none (comments open with a marker); manuals with code examples have some."""
    return share(sampled_lines(text, max_lines), is_sentence_line)


"""A structural signal, independent of the domain model: the share of a text's lines that are shaped like code.

A line is code-shaped when it ends the way statements and blocks end, carries an operator that prose does not
use, opens with a comment marker or a declaration keyword followed by code punctuation, or is a bracketed form.
Prose rules (Gopher, C4, FineWeb) never judge text whose share reaches `classify.code_shape`: those rules
measure words and sentences, and good code has few of either, whatever the domain model made of it.
"""
from __future__ import annotations

import re

from curate.tasks.text.words import FULL_STOPS

MAX_LINES = 100  # lines sampled, spread across the text: enough for a stable share, bounded per document

_END = re.compile(r"(?:[{};(\[]|=>|->|\\|\)\s*:|,\s*\)|\{\s*\}|\]\s*,)$")
_OPERATOR = re.compile(r"==|!=|:=|=>|->|&&|\|\||::|\+=|-=|<-|\$\{|\$\(|@\{|%\{|[A-Za-z0-9_]\(\)|[A-Za-z0-9_]\[[A-Za-z0-9_]*\]|"
                       r"\)\s*\{|^\s*[A-Za-z0-9_.$@%>\-\[\]\"']+\s*=\s*\S")
_COMMENT = re.compile(r"^\s*(?:#!|#\s|#$|#include|//|/\*|\*\s|\*/|;;|--\s|@\w)")
_KEYWORD = re.compile(
    r"^\s*(?:def|class|return|import|from|elif|else|for|foreach|while|switch|case|try|except|catch|finally|func|fn|"
    r"let|const|var|function|package|use|my|our|sub|local|export|public|private|protected|static|struct|impl|enum|"
    r"interface|type|module|require|unless|until|then|fi|esac|done|do|begin|end|select|insert|create|alter|drop|"
    r"grant|declare|if)\b.*[(){}\[\];:=<>$@]")
_FORM = re.compile(r"^\s*\(.*\)\s*$|^\s*\((?:def|let|set|if|cond|lambda|when|unless|require|provide)|"
                   r"^\s*(?:end|fi|done|esac|else|begin|end;|END)\s*$|[A-Za-z0-9_.]\((?!s\))")  # forms, block ends, calls


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
    if s.endswith(_PROSE_ENDS) and not _OPERATOR.search(s) and not _COMMENT.match(s):
        return False  # a sentence, even one that starts with "for" or "if"
    return bool(_END.search(s) or _OPERATOR.search(s) or _COMMENT.match(s) or _KEYWORD.match(s) or _FORM.search(s) or _SQL.match(s))


def code_shape(text: str, max_lines: int = MAX_LINES) -> float:
    """Share of the non-empty lines (up to `max_lines` of them, spread across the text) that are code-shaped."""
    lines = _sample([ln for ln in text.splitlines() if ln.strip()], max_lines)
    if not lines:
        return 0.0
    return sum(map(is_code_line, lines)) / len(lines)


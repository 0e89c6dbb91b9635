"""Turn the command line's INPUT arguments into named corpora and their files, before anything runs.

An INPUT is `PATH` or `NAME=PATH`; PATH is a file, a directory (searched recursively) or a glob.
Each INPUT is one corpus. A path that does not exist is an error here, not a failure mid-run.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

from tasks.ingest import FileJob
from tasks.readers import input_kind

_SUFFIXES = (".jsonl.gz", ".jsonl.zst", ".ndjson.gz", ".ndjson.zst", ".jsonl", ".ndjson", ".parquet", ".txt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class InputError(ValueError):
    """An input that cannot be curated; the message names it."""


@dataclass
class Corpus:
    name: str
    root: str  # what the user named
    jobs: list[FileJob] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files in the folder that are not inputs


def _strip_suffix(name: str) -> str:
    for suf in _SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _safe_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("._") or "corpus"
    return name


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def resolve_input(arg: str) -> Corpus:
    name, sep, path_s = arg.partition("=")
    if not sep or "/" in name or not name:
        name, path_s = "", arg
    elif not _NAME.match(name):
        raise InputError(f"invalid corpus name {name!r} in {arg!r}: use letters, digits, '_', '.', '-'")
    path = Path(path_s).expanduser()
    if glob.has_magic(path_s):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise InputError(f"no files match {path_s!r}")
        root = _glob_root(path_s)
        corpus = Corpus(name or _safe_name(root.resolve().name), path_s)
    elif path.is_file():
        files, root = [path], path.parent
        corpus = Corpus(name or _safe_name(_strip_suffix(path.name)), path_s)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        root = path
        corpus = Corpus(name or _safe_name(path.resolve().name), path_s)
    else:
        raise InputError(f"input not found: {path_s} (no such file, directory or matching glob)")
    for f in files:
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
        if input_kind(f) is None:
            corpus.ignored.append(f"{corpus.name}/{rel}")
        else:
            corpus.jobs.append(FileJob(corpus.name, str(f), rel))
    if not corpus.jobs:
        raise InputError(
            f"no input files in {path_s}: expected {', '.join(_SUFFIXES)} (found {len(files)} other files)"
        )
    return corpus


def resolve_inputs(args: list[str]) -> list[Corpus]:
    corpora = [resolve_input(a) for a in args]
    seen: dict[str, str] = {}
    for c in corpora:
        if c.name in seen:
            raise InputError(
                f"two inputs are both named corpus {c.name!r} ({seen[c.name]} and {c.root}): name them NAME=PATH"
            )
        seen[c.name] = c.root
    return corpora

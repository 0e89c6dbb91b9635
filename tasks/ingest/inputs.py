"""Turn the command line's INPUT arguments into named corpora and their files, before anything runs.

An INPUT is `PATH` or `NAME=PATH`; PATH is a file, a directory (searched recursively) or a glob.
Each INPUT is one corpus. A path that does not exist is an error here, not a failure mid-run.

Nothing in a folder is passed over in silence: a file that is not an input (another suffix, a dot-file) is listed
as ignored with why; a link that leads out of the folder, or a sub-folder that cannot be listed, becomes a job that
is never read and ends as one reject with its reason. Links to folders are not followed.
"""
from __future__ import annotations

import glob
import os
import re
import stat
from pathlib import Path

from curate.schemas.documents import RejectReason as R
from curate.schemas.inputs import Corpus, InputFile
from curate.tasks.ingest.readers import input_kind
from curate.tasks.engine.storage import StorageError, is_remote, local_path
from curate.tasks.ingest.remote import list_objects, version_key

_SUFFIXES = (".jsonl.gz", ".jsonl.zst", ".ndjson.gz", ".ndjson.zst", ".jsonl", ".ndjson", ".parquet", ".txt", ".warc.gz",
             ".warc")
CORPUS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Stage folders hold internal entries beside the corpora (dedup/index, dedup/sigs): no corpus may take their names.
RESERVED_NAMES = frozenset({"index", "sigs", "index.lock"})


REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_CONFIG = REPO_ROOT / "data" / "sample.yaml"  # what `curate run` with no input and no --config uses


class InputError(ValueError):
    """An input that cannot be curated; the message names it."""


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


def check_corpus_name(name: str, where: str) -> None:
    if not CORPUS_NAME.match(name):
        raise InputError(f"invalid corpus name {name!r} in {where!r}: 1 to 100 letters, digits, '_', '.', '-' "
                         "(starting with a letter or digit)")
    if name in RESERVED_NAMES:
        raise InputError(f"corpus name {name!r} in {where!r} is reserved (an internal folder): choose another")


def _not_readable(p: Path, real_root: Path, root: Path) -> str | None:
    """Why a file found in an input folder is never opened: a link out of the folder (or one that loops), or not a
    regular file (a FIFO would block the reader forever, a device never end)."""
    try:
        target = p.resolve(strict=True)
        mode = target.stat().st_mode
    except (OSError, RuntimeError) as err:  # a dangling link, a loop of links
        return f"a link that cannot be followed ({getattr(err, 'strerror', None) or err})"
    if p.is_symlink() and not target.is_relative_to(real_root):
        return f"{_LEADS_OUT} {root} (to {target})"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device): never read"
    return None


def _refusal_reason(why: str) -> str:
    """A link out of the folder is `symlink_outside_root`; a loop of links, a FIFO or a device, `unreadable_file`."""
    return R.SYMLINK_OUTSIDE_ROOT if why.startswith(_LEADS_OUT) else R.UNREADABLE_FILE


_LEADS_OUT = "a link that leads out of"


def walk_folder(root: Path) -> tuple[list[Path], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(input candidates, refused with why, ignored with why) under a folder, without following links out of it."""
    files, refused, ignored = [], [], []
    real_root = root.resolve()

    def unreadable(err: OSError) -> None:
        refused.append((Path(err.filename), f"cannot list folder: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                dirnames.remove(d)
                ignored.append((here / d, "a link to a folder (not followed)"))
            elif d.startswith("."):
                dirnames.remove(d)
                ignored.append((here / d, "a hidden folder"))
        for f in sorted(filenames):
            p = here / f
            if f.startswith("."):
                ignored.append((p, "a hidden file"))
            elif why := _not_readable(p, real_root, root):
                refused.append((p, why))
            else:
                files.append(p)
    return sorted(files), sorted(refused), sorted(ignored)


def _exists(path: str) -> bool:
    try:
        return local_path(path).expanduser().exists()
    except OSError:  # a name too long to be a path, say
        return False


def _split(arg: str) -> tuple[str, str]:
    """(corpus name or "", path) of a NAME=PATH or PATH argument; a path that exists as written wins (it may hold '=')."""
    name, sep, path_s = arg.partition("=")
    if not sep or not name or is_remote(arg) or _exists(arg):
        return "", arg
    check_corpus_name(name, arg)
    return name, path_s


def _found(path_s: str, name: str) -> tuple[Corpus, Path, list[Path], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(the corpus, its root, its files, refused and ignored ones with why) of a local file, folder or glob."""
    path = local_path(path_s).expanduser()
    if glob.has_magic(path_s):
        files = [p for p in sorted(Path(p) for p in glob.glob(str(path), recursive=True)) if p.is_file()]
        if not files:
            raise InputError(f"no files match {path_s!r}")
        root = _glob_root(path_s)
        return Corpus(name or _safe_name(root.resolve().name), path_s), root, files, [], []
    if path.is_file():
        return Corpus(name or _safe_name(_strip_suffix(path.name)), path_s), path.parent, [path], [], []
    if path.is_dir():
        files, refused, ignored = walk_folder(path)
        return Corpus(name or _safe_name(path.resolve().name), path_s), path, files, refused, ignored
    raise InputError(f"input not found: {path_s} (no such file, directory or matching glob)")


def resolve_input(arg: str) -> Corpus:
    name, path_s = _split(arg)
    if is_remote(path_s):  # s3://... : listed here, streamed by the worker that ingests each object
        return _remote_corpus(path_s, name)
    corpus, root, files, refused, ignored = _found(path_s, name)
    if not name:
        check_corpus_name(corpus.name[:100], path_s)
        corpus.name = corpus.name[:100]

    def rel(f: Path) -> str:
        return f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name

    corpus.ignored += [f"{corpus.name}/{rel(f)}: {why}" for f, why in ignored]
    corpus.ignored += [f"{corpus.name}/{rel(f)}: not an input format" for f in files if input_kind(f) is None]
    corpus.files += [InputFile(corpus.name, str(f), rel(f)) for f in files if input_kind(f) is not None]
    corpus.files += [InputFile(corpus.name, str(f), rel(f),
                               refused=(_refusal_reason(why), why))
                     for f, why in refused]
    if not corpus.files:
        raise InputError(
            f"no input files in {path_s}: expected {', '.join(_SUFFIXES)} (found {len(files)} other files)"
        )
    return corpus


def _remote_corpus(url: str, name: str) -> Corpus:
    """A corpus on object storage: a prefix (every object under it) or one object, listed once; no object is read."""
    try:
        objects, hidden, single = list_objects(url)
    except StorageError as err:
        raise InputError(str(err)) from None
    last = url.rstrip("/").rsplit("/", 1)[-1]
    corpus = Corpus(name or _safe_name(_strip_suffix(last) if single else last), url)
    if not name:
        check_corpus_name(corpus.name[:100], url)
        corpus.name = corpus.name[:100]
    corpus.ignored += [f"{corpus.name}/{rel}: {why}" for rel, why in hidden]
    for obj_url, rel, info in objects:
        if input_kind(Path(rel)) is None:
            corpus.ignored.append(f"{corpus.name}/{rel}: not an input format")
        else:
            corpus.files.append(InputFile(corpus.name, obj_url, rel, size=int(info.get("size") or 0),
                                          version=version_key(info)))
    if not corpus.files:
        raise InputError(f"no input files in {url}: expected {', '.join(_SUFFIXES)} (found {len(objects)} other objects)")
    return corpus


def default_inputs(cfg) -> list[str]:
    """Config corpora if any, else each file of the bundled sample as its own corpus."""
    if cfg.corpora:
        return [f"{c.name}={c.path}" for c in cfg.corpora]
    return [str(p) for p in sorted([*SAMPLE_DIR.glob("*.jsonl.gz"), *SAMPLE_DIR.glob("*.warc.gz")])]


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

"""The work root on disk: atomic writes, input fingerprints and stage-completion markers.

One commit protocol for every output: write a temporary sibling (named for its writer: host, pid and a random
part, so two writers never share one), then rename it over the final name (`commit`) or link it to a name that
must not exist yet (`commit_new`: a version is never overwritten). A kill at any point leaves either the old
file or the new one, plus at worst a temporary file, which the next run removes (`clean_orphans`).

For the exact-commit-point kill test, CURATE_KILL_BEFORE=<path suffix or glob> kills the process with SIGKILL just
before it commits a file whose path ends so, and CURATE_COMMIT_LOG=<file> lists every committed path.
"""
from __future__ import annotations

import contextlib
import hashlib
import fnmatch
import functools
import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from curate.schemas.report import Part
from curate.schemas.work_root import WorkRoot, part_name
from curate.tasks.engine import storage
from curate.tasks.engine.spool import (committed, content_fingerprint, discard, listed, present, readable,
                                       same_record, stored_fingerprint, stored_size)

_HOST = socket.gethostname().replace(".", "_")
ORPHAN_AGE_S = 24 * 3600  # a temporary file of another host (or of an unknown writer) older than this is an orphan


def temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _before_commit(final: Path) -> None:
    committed(final)  # (a file of a work root on object storage: sent before the flow's next task)
    if log := os.environ.get("CURATE_COMMIT_LOG"):
        with open(log, "a") as f:  # one short line per write: O_APPEND keeps lines whole across processes
            f.write(f"{final}\n")
    target = os.environ.get("CURATE_KILL_BEFORE")
    if target and (fnmatch.fnmatch(str(final), "*" + target) if "*" in target else str(final).endswith(target)):
        os.kill(os.getpid(), signal.SIGKILL)


def commit(tmp: Path, final: Path) -> None:
    """Make `tmp` the file `final` in one step (rename; replaces an older `final`)."""
    _before_commit(final)
    os.replace(tmp, final)


def commit_new(tmp: Path, final: Path) -> None:
    """Make `tmp` the file `final` only if no `final` exists (a hard link fails if it does): FileExistsError."""
    _before_commit(final)
    try:
        os.link(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it over `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        yield tmp
        commit(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def key_digest(key: dict) -> str:
    """A content key's short hash: it names the record (and the shards) made under the key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def keyed_record(record: Path, key: dict) -> Path:
    """The record of a job made under `key`, beside the name the step gives it: `<part>.done.json` ->
    `<part>.<key digest>.done.json`."""
    base = record.name.removesuffix(".json").removesuffix(".done")
    return record.with_name(f"{base}.{key_digest(key)}.done.json")


def create_record(path: Path, record: dict) -> None:
    """Create a job's record, never replacing one: a record there already naming the same outputs is the same commit
    (a task that ran twice); one naming other bytes is stale (its outputs were made again since) and is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    for _ in range(2):
        tmp = temp_name(path)
        tmp.write_text(text, encoding="utf-8")
        try:
            return commit_new(tmp, path)
        except FileExistsError:
            if same_record(read_json(path) or {}, record):
                return None
            discard(path)
    raise WorkRootError(f"{path}: written by another writer while this one was being made")


def output_digests(outputs: list[Path], root: Path) -> dict[str, dict]:
    """What a record says of each output: its bytes, sha256 and content fingerprint (one read of each)."""
    out = {}
    for p in outputs:
        sha = hashlib.sha256()
        with open(readable(p), "rb") as f:
            fingerprint = content_fingerprint(f, sha)
            out[WorkRoot(root).relative(p)] = {"bytes": f.tell(), "sha256": sha.hexdigest(), "xxh3": fingerprint}
    return out


def outputs_hold(record: dict, outputs: list[Path], root: Path) -> bool:
    """Whether every output of a recorded result is there with the bytes the record names (a record of an earlier
    layout names none: each output being there is enough)."""
    named = record.get("outputs")
    if named is None:
        return all(present(p) for p in outputs)
    try:
        return all((n := named.get(WorkRoot(root).relative(p))) is not None and file_fingerprint(p) == n["xxh3"]
                   for p in outputs)
    except (OSError, KeyError, TypeError):
        return False


def holds_text(path: str, text: str) -> bool:
    """Whether the file at `path` is there with this content: run on each Dask worker, to find the workers that do
    not see the flow's work root (flows/runtime.check_workers_see)."""
    try:
        return Path(path).read_text(encoding="utf-8") == text
    except OSError:
        return False


def read_json(path: Path) -> Any | None:
    """A stage's record: None when it is absent or unreadable (the work it records is redone)."""
    try:
        return json.loads(readable(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class WorkRootError(RuntimeError):
    """A file of the work root that others rely on is damaged: the message names it and what to do."""


def read_index(path: Path) -> Any | None:
    """A file that says what the work root holds (a corpus index): None when absent; damaged, it is an error (read as
    absent, every part ever ingested would count again)."""
    try:
        return json.loads(readable(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise WorkRootError(f"{path} is damaged ({err}): restore it, or ingest its corpus again") from None


def current_parts(work_root: str | Path) -> Callable[[str, str], bool]:
    """Whether a part (corpus, part name) is one of its corpus's latest ingest, by the corpus index (read once per
    corpus). Parts of an earlier ingest (another part size, files since gone) stay on disk, published, but are not
    the corpus any more. A corpus with no index (a work root from before it): every part counts."""
    @functools.cache
    def names(corpus: str) -> set[str] | None:
        index = read_index(WorkRoot(work_root).corpus_index(corpus))
        return None if index is None else {part_name(p["docs_path"]) for f in index["files"] for p in f["parts"]}

    def current(corpus: str, name: str) -> bool:
        return (known := names(corpus)) is None or name in known
    return current


def corpus_parts(work_root: str | Path) -> dict[str, list[Part]]:
    """Every corpus of the work root and the parts of its latest ingest, by its corpus index."""
    out = {}
    for path in listed(WorkRoot(work_root).stage("ingest"), "*/_corpus.json"):
        index = read_index(path)
        out[index["corpus"]] = [Part.model_validate(p) for f in index["files"] for p in f["parts"]]
    return out


def file_fingerprint(path: Path) -> str:
    """xxh3-128 of the file's bytes and size: content, not mtime, decides whether work is reused. (A file of a
    remote work root: as its object's metadata names it, read without fetching it.) A local file is hashed once per
    process while it is the same file (inode, size and mtime): the stages' keys and records name a part many times."""
    if (stored := stored_fingerprint(path)) is not None:
        return stored
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        state = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if (known := _FINGERPRINTS.get(state)) is None:
            known = content_fingerprint(f)
            with _FINGERPRINTS_LOCK:
                _FINGERPRINTS[state] = known
                while len(_FINGERPRINTS) > 100_000:
                    _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
        return known


_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINTS_LOCK = threading.Lock()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes (a file of a remote work root: fetched first)."""
    return storage.sha256_file(readable(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_orphans(root: Path) -> list[Path]:
    """Remove temporary files whose writer is gone: this host's dead processes, or anything older than a day.
    A temporary file of a live writer (a concurrent run) is left alone."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    now = time.time()
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            path = Path(dirpath) / name
            writer = name[: -len(".tmp")].rsplit(".", 1)[-1].rsplit("-", 2)  # [host, pid, random]
            mine = len(writer) == 3 and writer[0] == _HOST and writer[1].isdigit()
            try:
                if (mine and not _alive(int(writer[1]))) or (not mine and now - path.stat().st_mtime > ORPHAN_AGE_S):
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
    return removed


def open_parquet(path: Path):
    """A Parquet file to read a batch at a time. Arrow's default pre-buffering reads every row group's column chunks
    ahead (a 46-row-group part's text: 151 MB of Arrow memory against 37 MB without), so memory would follow the
    part's size rather than the batch's."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(readable(path), pre_buffer=False)


def size_of(path: Path) -> int:
    """Bytes of a file; 0 when it cannot be read (the stage that reads it reports why)."""
    try:
        stored = stored_size(path)
        return Path(path).stat().st_size if stored is None else stored
    except OSError:
        return 0

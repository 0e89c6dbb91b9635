"""The landing directory and the corpus catalog: which new corpora are ready to backfill, and which the work root
has already seen.

A corpus lands as a folder <landing>/<name>/ (a local folder, or a prefix on object storage: s3://bucket/landing/) of .jsonl[.gz|.zst], .parquet or .txt files. It is ready when a
file named `_READY` is in it: write the marker last, after every file is completely copied, and a half-copied
corpus is never picked up. Its fingerprint hashes every file's relative path and content (the marker excluded).
The catalog (<work root>/catalog/corpora.json) records each corpus's fingerprint and what became of it; a
corpus already there triggers nothing, and one whose files changed since it was fingerprinted is refused.
"""
from __future__ import annotations

from curate.schemas.work_root import WorkRoot

import fcntl
import json
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import xxhash

from curate.tasks.ingest.inputs import CORPUS_NAME, RESERVED_NAMES, walk_folder
from curate.tasks.engine.storage import Lease, StorageError, WorkRootBusy, filesystem, is_remote, local_path
from curate.tasks.ingest.remote import list_objects, version_key
from curate.tasks.engine.files import read_json, write_json_atomic

READY_MARKER = "_READY"
RETRY_STATUS = "retry"  # set by `curate server retry NAME`: the next watch starts the corpus's backfill again


class LandingError(ValueError):
    """A landing directory or corpus that cannot be used; the message names it."""


@dataclass(frozen=True)
class LandedCorpus:
    name: str
    path: str
    ready: bool
    fingerprint: str | None = None
    files: int = 0
    bytes: int = 0
    invalid: str | None = None  # why this folder cannot be a corpus (its name); the others are not held up
    why: str | None = None  # why a watch starts it (set by plan_watch)


def fingerprint_corpus(path: str | Path) -> tuple[str, int, int]:
    """(fingerprint, files, bytes) of a landed corpus, its marker excluded: over the content of every file of a local
    folder (a link that leads out of it is never read: its target's name stands for it; ingest rejects it), or over
    every object's name, ETag and size as a prefix on object storage lists them (nothing is read)."""
    if is_remote(path):
        return _fingerprint_objects(str(path))
    h = xxhash.xxh3_128()
    files = size = 0
    found, refused, _ = walk_folder(Path(path))
    for f in sorted(p for p in found if p.name != READY_MARKER):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
                size += len(chunk)
        files += 1
    for f, why in refused:
        h.update(f"{f.relative_to(path).as_posix()}\0refused:{why}".encode())
    return h.hexdigest(), files, size


def _fingerprint_objects(url: str) -> tuple[str, int, int]:
    try:
        objects, _, _ = list_objects(url)
    except StorageError as err:
        raise LandingError(str(err)) from None
    h = xxhash.xxh3_128()
    files = size = 0
    for _, rel, info in objects:
        if rel != READY_MARKER:
            h.update(f"{rel}\0{version_key(info)}\n".encode())
            files, size = files + 1, size + int(info.get("size") or 0)
    return h.hexdigest(), files, size


def corpus_name(path: str | Path) -> str:
    """A landed corpus's name: its folder's (or prefix's)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def ready_corpus(path: str) -> tuple[str, str]:
    """(where, name) of a landed corpus a backfill curates: its folder, resolved, or its prefix on object storage; a
    LandingError when its _READY marker is not there."""
    where = path if is_remote(path) else str(Path(path).resolve())
    if not corpus_ready(where):
        raise LandingError(f"{where}: no {READY_MARKER} marker (not there, or not completely copied yet)")
    return where, corpus_name(where)


def corpus_ready(path: str | Path) -> bool:
    """Whether the corpus's `_READY` marker is there (a file in its folder, an object under its prefix)."""
    if not is_remote(path):
        return (Path(path) / READY_MARKER).is_file()
    try:
        fs, root = filesystem(str(path).rstrip("/"))
        return fs.exists(f"{root}/{READY_MARKER}")
    except (StorageError, OSError) as err:
        raise LandingError(f"{path}: {err}") from None


def _scan_remote(landing: str) -> list[LandedCorpus]:
    """The corpus folders under a landing prefix on object storage; the ready ones fingerprinted by their listing."""
    try:
        fs, root = filesystem(landing.rstrip("/"))
        entries = fs.ls(root, detail=True) if fs.isdir(root) else None
    except (StorageError, OSError) as err:
        raise LandingError(f"landing prefix {landing}: {err}") from None
    if entries is None:
        raise LandingError(f"landing prefix {landing} holds nothing (or does not exist)")
    out = []
    for e in sorted(entries, key=lambda e: e["name"]):
        name = e["name"].rstrip("/").rsplit("/", 1)[-1]
        if e.get("type") != "directory" or name.startswith("."):
            continue
        url = f"{landing.rstrip('/')}/{name}"
        out.append(_landed(name, url, lambda: corpus_ready(url)))
    return out


INVALID_NAME = ("a corpus folder name must be letters, digits, '_', '.' or '-', at most 100, starting with a letter or "
                "digit, and not index or sigs: rename it")


def _landed(name: str, path: str, ready) -> LandedCorpus:
    """One landing folder (local or on object storage): refused for its name, waiting for its _READY marker, or
    ready, fingerprinted."""
    if not CORPUS_NAME.match(name) or name in RESERVED_NAMES:
        return LandedCorpus(name, path, False, invalid=INVALID_NAME)
    if not ready():
        return LandedCorpus(name, path, False)
    fp, files, size = fingerprint_corpus(path)
    return LandedCorpus(name, path, True, fp, files, size)


def scan_landing(landing: str | Path) -> list[LandedCorpus]:
    if is_remote(landing):
        return _scan_remote(str(landing))
    landing = Path(landing)
    if not landing.is_dir():
        raise LandingError(f"landing directory {landing} does not exist (or is not a directory)")
    out, real = [], landing.resolve()
    for d in sorted(p for p in landing.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.is_symlink() and not d.resolve().is_relative_to(real):  # its records are not the landing folder's
            out.append(LandedCorpus(d.name, str(d), False, invalid=f"a link that leads out of {landing} (to "
                                    f"{d.resolve()}): land the corpus itself, not a link to it"))
            continue
        out.append(_landed(d.name, str(d.resolve()), (d / READY_MARKER).is_file))
    return out


CATALOG_LEASE_S = 120.0  # a read-decide-write takes seconds; a holder killed frees it after this


class Catalog:
    """<work root>/catalog/corpora.json: name -> fingerprint, path, status, flow run, manifest, times. On object
    storage it is one object, read and written under a lease object of its own (catalog/_lease.json, held for a
    read-decide-write); on a disk, under a lock file."""

    def __init__(self, work_root: str | Path):
        self.remote = str(work_root).rstrip("/") if is_remote(work_root) else None
        self.dir = WorkRoot(local_path(work_root)).catalog() if self.remote is None else None
        self.path = self.dir / "corpora.json" if self.dir else f"{self.remote}/catalog/corpora.json"

    def entries(self) -> dict[str, dict]:
        if self.remote is None:
            return (read_json(self.path) or {}).get("corpora", {})
        fs, path = filesystem(self.path)
        try:
            return json.loads(fs.cat_file(path)).get("corpora", {})
        except FileNotFoundError:
            return {}

    def _write(self, entries: dict) -> None:
        if self.remote is None:
            write_json_atomic(self.path, {"corpora": entries})
        else:
            fs, path = filesystem(self.path)
            fs.pipe_file(path, (json.dumps({"corpora": entries}, indent=2, sort_keys=True) + "\n").encode())

    @contextmanager
    def locked(self):
        """Hold the catalog for a read-decide-write (a watcher and a backfill may write at once); re-entrant."""
        if getattr(self, "_held", False):
            yield
            return
        with self._lease() if self.remote else self._flock():
            self._held = True
            try:
                yield
            finally:
                self._held = False

    @contextmanager
    def _flock(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextmanager
    def _lease(self, name: str = "catalog/_lease.json", wait_s: float = CATALOG_LEASE_S):
        """A lease object of the catalog's, renewed while the block runs (WorkRootBusy: another held it past wait_s)."""
        lease = Lease(self.remote, ttl_s=CATALOG_LEASE_S, name=name)
        lease.acquire(wait_s=wait_s)
        try:
            with lease.heartbeat():
                yield
        finally:
            lease.release()

    @contextmanager
    def watching(self) -> Iterator[bool]:
        """One watch at a time: True to the watch that holds this, False at once to one that comes while another runs
        (the running one sees the same landing). Watches that waited instead piled up on a loaded machine, a process
        each, and kept the catalog from the backfills that record in it. A killed watch frees it: a lock file with its
        process, a lease object (catalog/_watch.json) after CATALOG_LEASE_S."""
        with self._watch_lease() if self.remote else self._watch_flock() as alone:
            yield alone

    @contextmanager
    def _watch_flock(self) -> Iterator[bool]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".watch.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    @contextmanager
    def _watch_lease(self) -> Iterator[bool]:
        with ExitStack() as held:
            try:
                held.enter_context(self._lease("catalog/_watch.json", wait_s=0))
            except WorkRootBusy:
                yield False
                return
            yield True

    def record(self, name: str, **fields) -> dict:
        with self.locked():
            entries = self.entries()
            entry = {**entries.get(name, {}), **fields,
                     "updated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            entries[name] = entry
            self._write(entries)
            return entry


@dataclass(frozen=True)
class WatchPlan:
    trigger: list[LandedCorpus]
    retry: list[LandedCorpus]      # triggered before, but its run crashed or failed: run again (it resumes)
    skipped: list[tuple[str, str]]  # (name, why)
    refused: list[tuple[str, str]]


def plan_watch(landed: list[LandedCorpus], catalog: dict[str, dict], failed_runs: set[str] = frozenset(),
               taken: Callable[[LandedCorpus], str | None] = lambda c: None) -> WatchPlan:
    """What a watch does with each landed corpus, given the catalog, the flow runs known to have failed, and
    `taken`: why a new corpus's name is one the work root already curated with other content (None: free). A corpus
    refused for the same reason and content before is skipped, saying so: one bad landing fails one watch, not every
    later one."""
    trigger, retry, skipped, refused = [], [], [], []
    for c in landed:
        entry = catalog.get(c.name) or {}
        kind, why = _decide(c, entry, failed_runs, taken)
        if kind == "refused" and entry.get("refused") == {"fingerprint": c.fingerprint, "why": why}:
            kind, why = "skipped", f"refused earlier: {why}"
        if kind in ("trigger", "retry"):
            (trigger if kind == "trigger" else retry).append(replace(c, why=why))
        else:
            (skipped if kind == "skipped" else refused).append((c.name, why))
    return WatchPlan(trigger, retry, skipped, refused)


def _decide(c: LandedCorpus, entry: dict, failed_runs: set[str], taken) -> tuple[str, str]:
    """(trigger, retry, skipped or refused; why) for one landed corpus."""
    if c.invalid:
        return "refused", c.invalid
    if not c.ready:
        return "skipped", f"no {READY_MARKER} marker yet"
    if not entry.get("status") or entry.get("status") == "refused":
        if why := taken(c):
            return "refused", why
        return "trigger", "new ready corpus"
    if entry["fingerprint"] != c.fingerprint:
        return "refused", (f"its files changed after it was fingerprinted ({entry['fingerprint'][:12]} -> "
                           f"{c.fingerprint[:12]}): land the new version in a folder of a new name")
    if entry.get("status") == RETRY_STATUS:
        return "retry", "marked for a retry (curate server retry)"
    if entry.get("status") != "done" and entry.get("flow_run_id") in failed_runs:
        return "retry", "its backfill crashed"
    return "skipped", f"already in the catalog ({entry.get('status')})"


def check_unchanged(path: str | Path, fingerprint: str | None) -> str:
    """A backfill's guard: the corpus is still what the watcher fingerprinted (if it did). Returns the
    current fingerprint."""
    now, _, _ = fingerprint_corpus(path)
    if fingerprint and now != fingerprint:
        raise LandingError(f"{path}: its files changed after it was fingerprinted ({fingerprint[:12]} -> {now[:12]}); "
                           "refused: land the new version under a new name")
    return now

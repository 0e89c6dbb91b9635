"""A work root on object storage, read and written through local spools: nothing is mirrored whole.

The stages read and write files under `job.root`. For an `s3://` (any fsspec URL) work root, each process that runs
them has a spool: a local folder that stands for the work root and holds only what that process has read or
written. A file is fetched when it is first read (`readable`: a Parquet part, a verdict table, a record) and a file
is there when the store has it (`present`); what a job writes stays in its spool until the job is done, then goes
to the store in commit order (storage._push_order: outputs, then the records naming them, then manifest versions,
created and never replaced, then pointers), and the spool is deleted.

- **A task's spool** (`job_spool`, made by `Step.run` on whichever worker runs the task, in that task's context):
  lives for one task, so a worker's local disk holds the parts it is working on, whatever the corpus's size. What
  a spool fetched is kept under `CURATE_SPOOL_BYTES` (default 4 GiB), the least recently fetched file deleted first
  (a task over a whole corpus, the tokenizer's sample or a corpus's clustering, reads it a part at a time; a file
  deleted while open stays readable, and one read again is fetched again).
- **The flow's spool** (`flow_spool`, for the run): the records the flow reads to decide what is reused, what the
  in-flow steps write (the corpus index, manifest versions, the report). What it wrote goes to the store before each
  task is sent (workers read it from there), and a file it read is checked against the store again before each later
  read (a worker may have written it since).

A local work root has no spool: every helper here returns the path as it is.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import fnmatch
import io
import itertools
import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import xxhash

from curate.tasks.engine.storage import (LEASE, Lease, StorageError, filesystem, inside, is_remote, object_version,
                                         protocol_of, size_setting)

DEFAULT_SPOOL_BYTES = 4 << 30
PUSH_THREADS = 8
FINGERPRINT_META = "curate-xxh3"  # user metadata of an object a spool sent: its content's fingerprint


def _local_state(p: Path) -> list[int]:
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


RECORD_SUFFIX = ".done.json"  # a job's record (engine/files.create_record): created, never replaced
COMMIT_POINTS = ("done.json", "_corpus.json", "registry.json")  # each names outputs that must be there before it
READ_THEN_WRITTEN = ("dedup/index/registry.json", "/latest.json")  # single writers' pointers: written conditionally


def _push_order(rel: str) -> int:
    """0: data; 1: commit points (completion records, a corpus's index, the dedup registry: each names outputs sent
    before it); 2: manifest versions; 3: pointers read first by others (latest, report). A push cut anywhere leaves
    outputs no commit point names yet, never a commit point naming what is not there."""
    name = rel.rsplit("/", 1)[-1]
    if rel.startswith("manifests/") and name.startswith("v") and name.endswith(".json"):
        return 2
    if name in ("latest.json", "report.json") or rel.startswith("catalog/"):
        return 3
    if name.endswith(COMMIT_POINTS):
        return 1
    return 0


def _skipped(rel: str) -> bool:
    """Local bookkeeping that is not part of the work root: temporary files, lock files, leases."""
    name = rel.rsplit("/", 1)[-1]
    return name == LEASE or name.endswith((".tmp", ".lock"))


def content_fingerprint(f, *also) -> str:
    """xxh3-128 of a binary stream's bytes, and their count; `also`: other hashes fed the same bytes (one read)."""
    h = xxhash.xxh3_128()
    size = 0
    while chunk := f.read(1 << 22):
        h.update(chunk)
        for other in also:
            other.update(chunk)
        size += len(chunk)
    return f"{h.hexdigest()}-{size}"


class Spool:
    """A remote work root (`url`) and the local folder standing for it in one process or task."""

    def __init__(self, url: str, local: Path, revalidate: bool):
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.local = Path(local)
        self.revalidate = revalidate  # the flow's: files read may since have been written by a worker
        self.seen: dict[str, tuple[str, list[int]]] = {}  # rel -> (object version, local state) as fetched or sent
        self.pid = os.getpid()
        self._s3 = protocol_of(self.fs) in ("s3", "s3a")
        self.limit = size_setting("CURATE_SPOOL_BYTES", DEFAULT_SPOOL_BYTES)
        self._fetched: dict[str, int] = {}  # rel -> bytes, least recently fetched first
        self._committed: set[str] = set()  # files committed here since the last push
        self.generation: dict[str, str | None] = {}  # a pointer read here -> its ETag as read (None: there was none)
        self._lock = threading.Lock()

    def rel(self, path: str | Path) -> str | None:
        """`path` relative to the spool, or None when it is not under it."""
        p = Path(path)
        if not p.is_absolute() or not p.is_relative_to(self.local):
            return None
        rel = p.relative_to(self.local).as_posix()
        return rel if rel != "." else None

    def _info(self, rel: str) -> dict | None:
        """The store's info of an object, one HEAD (on S3 with its user metadata); None when it is not there."""
        path = f"{self.root}/{rel}"
        try:
            if self._s3:
                bucket, key, _ = self.fs.split_path(path)
                head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
                return {"ETag": head.get("ETag"), "size": head.get("ContentLength"), "type": "file",
                        "metadata": head.get("Metadata") or {}}
            self.fs.invalidate_cache(path)  # (a listing cached earlier in this process may be stale)
            return self.fs.info(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StorageError(f"{self.url}/{rel}: {err}") from None

    def _mine(self, rel: str, dest: Path) -> bool:
        """Written (or changed) here and not sent yet: the local file is the one to read."""
        seen = self.seen.get(rel)
        return seen is None or _local_state(dest) != seen[1]

    def _changed(self, rel: str, dest: Path) -> str | None:
        """The object's version when it is there to fetch (for the flow's copy: only if it changed since), else None.
        A pointer's generation is noted first: it is written back only over that one (push)."""
        info = self._info(rel)
        if self._tracked(rel):
            self.generation[rel] = info.get("ETag") if info else None
        if info is None or (dest.is_file() and object_version(info) == self.seen[rel][0]):
            return None
        return object_version(info)

    def fetch(self, rel: str) -> None:
        """The object at `rel` in the spool, when the store has it (fetched again where the flow's copy is stale)."""
        dest = inside(self.local, rel, f"the object key {self.url}/{rel}")
        if dest.is_file() and (self._mine(rel, dest) or not self.revalidate):
            return
        version = None
        if dest.is_file() or self._tracked(rel):
            if (version := self._changed(rel, dest)) is None:
                return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{threading.get_ident()}.fetch.tmp")
        try:
            self.fs.get_file(f"{self.root}/{rel}", str(tmp))  # one GET; an absent object is no file here
            os.replace(tmp, dest)
        except FileNotFoundError:
            return
        finally:
            tmp.unlink(missing_ok=True)
        if self.revalidate and version is None:
            version = object_version(self._info(rel) or {})
        self.seen[rel] = (version or "", _local_state(dest))
        self._keep_under_limit(rel, dest.stat().st_size)

    def _keep_under_limit(self, rel: str, size: int) -> None:
        """Account a fetched file; delete the least recently fetched others while the fetched bytes pass the limit."""
        with self._lock:
            self._fetched.pop(rel, None)
            self._fetched[rel] = size
            total = sum(self._fetched.values())
            for old in list(self._fetched):
                if total <= self.limit or old == rel:
                    break
                dest = self.local / old
                if dest.is_file() and not self._mine(old, dest):
                    dest.unlink()
                    self.seen.pop(old, None)
                total -= self._fetched.pop(old)

    def exists(self, rel: str) -> bool:
        dest = self.local / rel
        if dest.is_file() and self._mine(rel, dest):
            return True
        info = self._info(rel)
        return info is not None and info.get("type", "file") == "file"

    def listing(self, folder: str, pattern: str) -> list[str]:
        """Relative paths under `folder` matching `pattern` (relative to the folder), the store's and this spool's."""
        base = f"{self.root}/{folder}".rstrip("/")
        try:
            remote = {p[len(self.root):].lstrip("/") for p in self.fs.find(base)}
        except FileNotFoundError:
            remote = set()
        local_base = self.local / folder
        here = {p.relative_to(self.local).as_posix() for p in local_base.rglob("*") if p.is_file()} \
            if local_base.is_dir() else set()
        found = sorted(r for r in remote | here
                       if not _skipped(r) and fnmatch.fnmatch(r[len(folder):].lstrip("/"), pattern))
        for r in found:  # an object store holds keys, not paths: `a/../../x` is a valid key
            inside(self.local, r, f"the object key {self.url}/{r}")
        return found

    def remove(self, rel: str) -> None:
        (self.local / rel).unlink(missing_ok=True)
        self.seen.pop(rel, None)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{self.root}/{rel}")

    def unsent(self) -> list[str]:
        """Files written or changed here since they were fetched or sent."""
        out = []
        for dirpath, _, names in os.walk(self.local):
            for name in names:
                dest = Path(dirpath) / name
                rel = dest.relative_to(self.local).as_posix()
                if not _skipped(rel) and self._mine(rel, dest):
                    out.append(rel)
        return out

    def push(self, lease: Lease | None = None, committed_only: bool = False) -> list[str]:
        """Send what was written here, in commit order; a manifest version or a tokenizer file is created, never
        replaced (a different one there already is an error). `committed_only`: only the files committed since the
        last push (engine/files.commit tells `committed`), without walking the spool."""
        if committed_only:
            noted, self._committed = self._committed, set()
            found = [r for r in noted if (self.local / r).is_file() and self._mine(r, self.local / r)]
        else:
            found, self._committed = self.unsent(), set()
        todo = sorted(found, key=lambda r: (_push_order(r), r))
        if todo and lease:
            lease.check_mine()
        for order, group in itertools.groupby(todo, key=_push_order):  # each kind after the one before it is sent
            if lease:
                lease.renew(force=order > 0)
            with ThreadPoolExecutor(PUSH_THREADS) as pool:  # (within a kind, together: outputs need no order)
                list(pool.map(self._send, group))
        return todo

    def _send(self, rel: str) -> None:
        target = f"{self.root}/{rel}"
        if _push_order(rel) == 2 or rel.startswith("tokenizer/") or rel.endswith(RECORD_SUFFIX):
            _create(self.fs, self.local / rel, target, f"{self.url}/{rel}")
        elif self._tracked(rel):
            self._put_over_generation(rel, target)
        else:
            self._put(rel, target)
        version = object_version(self._info(rel) or {}) if self.revalidate else ""
        self.seen[rel] = (version, _local_state(self.local / rel))

    def _put(self, rel: str, target: str) -> None:
        """Send a file; on S3 with its content's fingerprint as metadata, so that a later key is computed from it
        without reading the object (stored_fingerprint)."""
        src = self.local / rel
        if self._s3:
            with open(src, "rb") as f:
                self.fs.put_file(str(src), target, Metadata={FINGERPRINT_META: content_fingerprint(f)})
        else:
            self.fs.put_file(str(src), target)

    def _tracked(self, rel: str) -> bool:
        return self._s3 and rel.endswith(READ_THEN_WRITTEN)

    def _put_over_generation(self, rel: str, target: str) -> None:
        """Send a pointer that is read, changed and written back (the dedup registry, a manifest folder's latest) only
        over the generation this spool read (`If-Match` its ETag; `If-None-Match: *` where it read none): a writer
        that another wrote after is refused, never a lost update."""
        bucket, key, _ = self.fs.split_path(target)
        data = (self.local / rel).read_bytes()
        read = self.generation.get(rel)
        condition = {"IfMatch": read} if read else {"IfNoneMatch": "*"}
        try:
            sent = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition,
                                   Metadata={FINGERPRINT_META: content_fingerprint(io.BytesIO(data))})
        except OSError as err:
            if isinstance(err, FileExistsError) or err.errno == errno.EINVAL:  # (s3fs's 412 Precondition Failed)
                raise StorageError(f"{self.url}/{rel} was written by another writer after this one read it: not "
                                   "replaced (run again: it reads the new one)") from None
            raise StorageError(f"{self.url}/{rel}: {err}") from None
        self.generation[rel] = sent.get("ETag")

    def fingerprint(self, rel: str, info: dict) -> str:
        """The content fingerprint of a stored object: from its metadata where a spool sent it to S3, else read."""
        path = f"{self.root}/{rel}"
        if found := (info.get("metadata") or {}).get(FINGERPRINT_META):
            return found
        key = (rel, object_version(info))
        if key not in _READ_FINGERPRINTS:
            with self.fs.open(path, "rb", block_size=1 << 22) as f:
                _READ_FINGERPRINTS[key] = content_fingerprint(f)
        return _READ_FINGERPRINTS[key]


_READ_FINGERPRINTS: dict[tuple[str, str], str] = {}


def _same(there: bytes, data: bytes, url: str) -> bool:
    """Whether an object already there is the one being created: the same bytes, or for a job's record the same key
    and outputs (its result's timings may differ: the same job run twice, a task Dask ran again)."""
    if there == data:
        return True
    if not url.endswith(RECORD_SUFFIX):
        return False
    try:
        return same_record(json.loads(there), json.loads(data))
    except ValueError:
        return False


def same_record(a: dict, b: dict) -> bool:
    """Two records of a job are one commit when they name the same key and outputs (timings may differ)."""
    return (a.get("key"), a.get("outputs")) == (b.get("key"), b.get("outputs"))


def _create(fs, src: Path, target: str, url: str) -> None:
    """Create `target` with the bytes of `src` (a conditional PUT, `If-None-Match: *`); the same object there already
    is fine, another one an error: a published version or a record is never replaced."""
    data = src.read_bytes()
    try:
        fs.pipe_file(target, data, mode="create")
    except FileExistsError:
        if not _same(fs.cat_file(target), data, url):
            raise StorageError(f"{url} exists with other content: a published version or a record is never "
                               "replaced") from None
    except TypeError:  # a filesystem without conditional writes: check, then write (the run's lease excludes others)
        if fs.exists(target) and not _same(fs.cat_file(target), data, url):
            raise StorageError(f"{url} exists with other content") from None
        fs.pipe_file(target, data)


_TASK: contextvars.ContextVar[Spool | None] = contextvars.ContextVar("curate_task_spool", default=None)
_FLOW: dict[tuple[int, str], Spool] = {}  # (pid, url) -> the flow's spool in that process


def _active() -> list[Spool]:
    """The spools of this process: this task's first, then the flow's (a forked worker inherits neither)."""
    pid = os.getpid()
    return [s for s in (_TASK.get(), *_FLOW.values()) if s is not None and s.pid == pid]


def spool_of(url: str) -> Spool | None:
    """The spool that stands for the work root `url` here: this task's, else this process's flow's."""
    return next((s for s in _active() if s.url == url.rstrip("/")), None)


def _owner(path: str | Path) -> tuple[Spool, str] | None:
    return next(((s, rel) for s in _active() if (rel := s.rel(path)) is not None), None)


def local_root(work_root: str | Path) -> Path:
    """The folder that stands for a work root here: itself when local, else its spool in this task or flow."""
    if not is_remote(work_root):
        return Path(work_root)
    spool = spool_of(str(work_root))
    if spool is None:
        raise StorageError(f"{work_root}: no spool in this process (a task reads a remote work root inside "
                           "Step.run, which makes one)")
    return spool.local


def readable(path: str | Path) -> Path:
    """`path`, fetched first when it is a file of a remote work root that this spool does not hold yet."""
    if (found := _owner(path)) is not None:
        found[0].fetch(found[1])
    return Path(path)


def readable_all(paths: list[str | Path], threads: int = 16) -> None:
    """Fetch the spooled files among `paths` that this spool does not hold yet, `threads` at a time (an object store
    answers many requests at once; one after another, each costs its round trip)."""
    todo = [found for p in paths if (found := _owner(p)) is not None]
    if len(todo) < 2:
        for spool, rel in todo:
            spool.fetch(rel)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(todo))) as pool:
        list(pool.map(lambda found: found[0].fetch(found[1]), todo))


def present(path: str | Path) -> bool:
    """Whether the file is there: on the local disk, or in the remote work root the path's spool stands for."""
    if (found := _owner(path)) is not None:
        return found[0].exists(found[1])
    return Path(path).is_file()


def listed(folder: str | Path, pattern: str) -> list[Path]:
    """Files under `folder` matching the glob `pattern`, for a spooled folder the store's as well as this spool's."""
    if (found := _owner(Path(folder) / "x")) is not None:
        spool, rel = found
        return [spool.local / r for r in spool.listing(rel.rsplit("/", 1)[0] if "/" in rel else "", pattern)]
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file())


def _stored(path: str | Path) -> tuple[Spool, str, dict] | None:
    """(spool, rel, the store's info) for a spooled file this spool did not write; None for any other file."""
    found = _owner(path)
    if found is None:
        return None
    spool, rel = found
    dest = spool.local / rel
    if dest.is_file() and spool._mine(rel, dest):
        return None
    info = spool._info(rel)
    if info is None:
        raise FileNotFoundError(str(path))
    return spool, rel, info


def stored_size(path: str | Path) -> int | None:
    """The size of a spooled file as the store has it (without fetching it); None for a local or unsent file."""
    found = _stored(path)
    return None if found is None else int(found[2].get("size") or 0)


def stored_fingerprint(path: str | Path) -> str | None:
    """The content fingerprint of a spooled file that this spool did not write, without fetching it (the same value
    as for the file on a local disk); None for a local or unsent file (hashed by the caller)."""
    found = _stored(path)
    return None if found is None else found[0].fingerprint(found[1], found[2])


def committed(path: str | Path) -> None:
    """A file is being committed under a spool (engine/files.commit): the flow sends it before its next task."""
    if (found := _owner(path)) is not None:
        found[0]._committed.add(found[1])


def discard(path: str | Path) -> None:
    """Remove a file, from the store too when it is a spooled one."""
    if (found := _owner(path)) is not None:
        found[0].remove(found[1])
    else:
        Path(path).unlink(missing_ok=True)


def spool_base() -> Path:
    """Where spools are made: $CURATE_SPOOL, else the system's temporary folder."""
    return Path(os.environ.get("CURATE_SPOOL") or tempfile.gettempdir())


@contextlib.contextmanager
def spooled(work_root: str) -> Iterator[None]:
    """A block that reads and writes the work root: in a spool of its own when the work root is on object storage
    and this task or flow has none (a task on a worker, a process a task started); else as it is."""
    if is_remote(work_root) and spool_of(work_root) is None:
        with job_spool(work_root):
            yield
    else:
        yield


@contextlib.contextmanager
def job_spool(url: str) -> Iterator[Spool]:
    """A task's spool of the work root `url`: fetched on read, sent when the block succeeds, deleted either way (a
    failed task's outputs are never sent: it is done again)."""
    base = spool_base()
    base.mkdir(parents=True, exist_ok=True)
    spool = Spool(url, Path(tempfile.mkdtemp(prefix="curate-task-", dir=base)).resolve(), revalidate=False)
    token = _TASK.set(spool)
    try:
        yield spool
        spool.push()
    finally:
        _TASK.reset(token)
        shutil.rmtree(spool.local, ignore_errors=True)


class SendingFirst:
    """A runner that sends what the flow wrote to the store before it sends a task (whose worker reads it there)."""

    def __init__(self, runner, spool: Spool):
        self.runner, self.spool, self.width = runner, spool, runner.width

    def submit(self, step, job):
        self.spool.push(committed_only=True)
        return self.runner.submit(step, job)

    def next_done(self, futures: list):
        return self.runner.next_done(futures)


@contextlib.contextmanager
def flow_spool(url: str, lease: Lease | None = None) -> Iterator[Spool]:
    """The flow's spool of the work root `url` for one run: sent at the end (also after a failed run: its finished
    parts are kept), then deleted."""
    base = spool_base()
    base.mkdir(parents=True, exist_ok=True)
    spool = Spool(url, Path(tempfile.mkdtemp(prefix="curate-flow-", dir=base)).resolve(), revalidate=True)
    key = (os.getpid(), spool.url)
    _FLOW[key] = spool
    try:
        try:
            yield spool
        finally:
            spool.push(lease)
    finally:
        _FLOW.pop(key, None)
        shutil.rmtree(spool.local, ignore_errors=True)


@contextlib.contextmanager
def leased_spool(url: str) -> Iterator[Spool]:
    """A run on the work root `url`: its one-writer lease taken (storage.Lease) and kept alive while the run goes on,
    the flow's spool for it, everything sent before the lease is released."""
    lease = Lease(url)
    lease.acquire(float(os.environ.get("CURATE_LEASE_WAIT_S") or 0))  # the service's backfills queue for it
    try:
        with flow_spool(url, lease) as spool, lease.heartbeat():
            yield spool
    finally:
        lease.release()

"""A manifest's shards on object storage, read through a local cache bounded in bytes: a least-recently-used set of
whole shards under the dataset's cache folder ($CURATE_CACHE/datasets/<hash of the work root URL>/tokens/...).

- A shard is downloaded when a reader first needs it, checked against the manifest's sha256 before it enters the
  cache (a download of other bytes is refused, never cached), and opened memory-mapped like a local one.
- The cache holds at most `CURATE_CACHE_BYTES` (default 16 GiB; `500M`, `8G`, `1T` or a number of bytes): before a
  download, the least recently used shards are deleted until the new one fits, and again after it (readers on one
  machine download side by side: between the two, the folder can hold the limit plus the downloads in flight). Using
  a shard marks it used (its mtime). A shard a reader still has mapped stays readable after it is deleted (its pages are freed when the reader
  drops it), so the disk in use is the limit plus the shards open at that moment; the loader keeps only a window of
  shards open per domain (MixtureDataset's `shuffle_shards`).
- DataLoader workers and ranks on one machine share the folder: the choice of what to delete is made under a lock
  file beside it; downloads run outside the lock, so workers fetch different shards at once. Machines that share no
  disk each have their own cache and read the object store directly.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from curate.tasks.engine.storage import fetch_verified, filesystem, inside, size_setting

DEFAULT_CACHE_BYTES = 16 << 30


def cache_bytes(value: str | None = None) -> int:
    """The cache's limit: `value`, else $CURATE_CACHE_BYTES, else 16 GiB ("8G", "500M", "1T", or bytes)."""
    return size_setting("CURATE_CACHE_BYTES", DEFAULT_CACHE_BYTES, value)


class ShardCache:
    """The shards of the dataset at `url` (a work root on object storage), cached under `local`."""

    def __init__(self, url: str, local: Path, limit: int | None = None):
        self.url, self.local = url.rstrip("/"), Path(local)
        self.limit = cache_bytes() if limit is None else limit
        self.fs, self.root = filesystem(self.url)

    def get(self, rel: str, sha256: str, size: int) -> Path:
        """The local file of the shard `rel`: the cached one (marked used), else downloaded and checked."""
        dest = inside(self.local, rel, f"{self.url}: a shard path")
        with contextlib.suppress(FileNotFoundError):
            if dest.stat().st_size == size:
                os.utime(dest)
                return dest
        with self._lock():
            self._make_room(size, dest)
        fetch_verified(self.fs, f"{self.root}/{rel}", dest, sha256)  # outside the lock: readers fetch side by side
        with self._lock():  # what others fetched meanwhile may have taken the room: back under the limit
            self._make_room(0, dest)
        return dest

    def cached(self) -> list[tuple[float, int, Path]]:
        """(last used, bytes, path) of every cached shard, least recently used first."""
        out = []
        for p in (self.local / "tokens").rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if not p.name.startswith(".") and p.is_file():
                    st = p.stat()
                    out.append((st.st_mtime, st.st_size, p))
        return sorted(out, key=lambda t: (t[0], str(t[2])))

    def _make_room(self, incoming: int, keep: Path) -> None:
        held = self.cached()
        total = sum(size for _, size, _ in held)
        for _, size, path in held:
            if total + incoming <= self.limit:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size

    @contextlib.contextmanager
    def _lock(self):
        self.local.mkdir(parents=True, exist_ok=True)
        with open(self.local.with_name(self.local.name + ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

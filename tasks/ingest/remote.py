"""Inputs on object storage (s3://, and fsspec's other protocols), read where they are ingested: listed by the flow
(one listing per prefix: names, sizes and versions), then streamed by the worker that ingests each file through
fsspec, a block at a time with read-ahead (Parquet by range reads). Nothing is downloaded whole, on any machine.

`RemoteFile` is the part of `pathlib.Path` the readers use (name, size, open, read_bytes), so every reader, its
checks and its rejects are the same for a local file and an object."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from curate.tasks.engine.storage import StorageError, filesystem, is_remote, local_path, object_version, protocol_of

BLOCK_BYTES = 8 << 20  # read-ahead per open object: what a worker holds of an input besides what it parses


@dataclass(frozen=True)
class _Stat:
    st_size: int


class RemoteFile:
    """An input object, as the readers use a Path."""

    def __init__(self, url: str, size: int | None = None):
        self.url = url
        self.name = PurePosixPath(url.rstrip("/")).name
        self._size = size

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteFile({self.url!r})"

    @functools.cached_property
    def _target(self) -> tuple[Any, str]:
        """(filesystem, path within it): made in the process that reads, not where the file was listed."""
        return filesystem(self.url)

    def stat(self) -> _Stat:
        if self._size is None:
            fs, path = self._target
            self._size = int(fs.info(path)["size"])
        return _Stat(self._size)

    def open(self, mode: str = "rb") -> Any:
        if mode != "rb":
            raise ValueError("inputs are read only")
        fs, path = self._target
        return fs.open(path, "rb", block_size=BLOCK_BYTES, cache_type="readahead")

    def read_bytes(self) -> bytes:
        with self.open() as f:
            return f.read()


def input_path(path: str, size: int | None = None):
    """What the readers read: a local Path, or a RemoteFile for an object's URL."""
    return RemoteFile(path, size) if is_remote(path) else local_path(path)


def list_objects(url: str) -> tuple[list[tuple[str, str, dict]], list[tuple[str, str]], bool]:
    """(url, name within the prefix, info) of each object under a prefix (or the one object it names), the
    (name, why) of those left out (hidden names: a segment starting with '.'), and whether the URL names one object.
    One listing; no object is read."""
    fs, path = filesystem(url.rstrip("/"))
    protocol = protocol_of(fs)
    try:
        if fs.isfile(path):
            return [(url, PurePosixPath(path).name, fs.info(path))], [], True
        found = fs.find(path, detail=True)
    except (OSError, ValueError) as err:
        raise StorageError(f"{url}: cannot list: {err}") from None
    if not found:
        raise StorageError(f"input not found: {url} (no such object or prefix)")
    objects, hidden = [], []
    for key, info in sorted(found.items()):
        rel = key[len(path):].lstrip("/")
        if info.get("type", "file") != "file" or not rel:
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            hidden.append((rel, "a hidden file"))
        else:
            objects.append((f"{protocol}://{key}", rel, info))
    return objects, hidden, False


def version_key(info: dict) -> str:
    """An object's content key for reuse: its store's version (ETag) and size, as listed."""
    return f"object:{object_version(info)}-{info.get('size')}"

"""Object storage (s3:// and the rest of fsspec's protocols) for work roots and datasets. (Inputs and landing
prefixes are listed and streamed where they are read: tasks/ingest/remote.py; a manifest's shards go through the
loader's bounded cache: tasks/train/shard_cache.py.)

A work root on object storage is read and written through local spools (tasks/engine/spool.py), with a commit
protocol that an object store has:

- **Each object is all-or-nothing**: an S3 PUT is never seen half-written.
- **Outputs before their records, records before manifests** (`Spool.push`): a task killed during a push leaves
  outputs with no record (redone by the next run) or shards with no manifest naming them (read by nobody); a reader
  that trusts only records and manifests never sees a partial result.
- **Records and versions are created, never replaced**: a job's record is named by its content key
  (`<part>.<key>.done.json`) and names each output with its sha256 and fingerprint; it is created with a conditional
  PUT (`If-None-Match: *`), as a manifest version and the tokenizer's files are. One there already is the same
  commit when it names the same outputs (a task run twice), else an error; reuse trusts a record only while each
  output it names has those bytes.
- **Pointers read and written back are generation-conditioned**: the dedup registry and a manifest folder's
  `latest.json` are sent with `If-Match` on the ETag they were read at (`If-None-Match: *` where there was none), so
  a writer that another wrote after is refused, never a lost update.
- **One run per work root** (`Lease`): `_lease.json` is created with a conditional PUT, so of two runs starting
  together one gets it and the other is refused with the holder named (or waits: `CURATE_LEASE_WAIT_S`). A lease
  left by a killed run expires after `CURATE_LEASE_S` (6 hours by default, renewed by a heartbeat while the run
  lives and at every push).

The endpoint and credentials are fsspec's and botocore's usual ones (AWS_ENDPOINT_URL or FSSPEC_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Iterator

from curate.schemas.manifest import Manifest

LEASE = "_lease.json"


class StorageError(Exception):
    """A remote location that cannot be used: one line naming it."""


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(url: str | os.PathLike) -> bool:
    """True for a URL of a protocol other than local files (s3://, gs://, memory://, ...); `name=s3://...` is not
    one (a corpus named before its URL)."""
    s = str(url)
    return bool(_SCHEME.match(s)) and not s.startswith("file://")


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_setting(name: str, default: int, value: str | None = None) -> int:
    """A size limit: `value`, else the environment variable `name`, else `default` ("8G", "500M", "1T", or bytes)."""
    text = (value if value is not None else os.environ.get(name, "")).strip().upper()
    if not text:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?", text)
    if not m or float(m.group(1)) <= 0:
        raise StorageError(f"{name}={text!r} is not a size (a number of bytes, or like 500M, 8G, 1T)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def local_path(url: str | os.PathLike) -> Path:
    """A local path or file:// URL as a Path."""
    s = str(url)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def filesystem(url: str):
    """(fsspec filesystem, path within it) for a URL; a protocol whose package is missing is one line."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise StorageError(f"{url}: {err}") from None


def protocol_of(fs) -> str:
    """A filesystem's URL scheme (fsspec gives a name or a tuple of them)."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def cache_dir(kind: str, url: str) -> Path:
    """The local mirror of a remote location: $CURATE_CACHE (default ~/.cache/curate)/<kind>/<hash of the URL>."""
    base = Path(os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate")
    return base / kind / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def object_version(info: dict) -> str:
    """What says an object changed: its ETag where the store has one, else size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    when = info.get("mtime") or info.get("LastModified") or info.get("created")
    return str(etag) if etag else f"{info.get('size')}-{when}"


def inside(root: Path, rel: str, what: str) -> Path:
    """`root / rel` when it stays under root; a name that leads out of it (`..` segments, an absolute path) comes from
    data (an object key, a manifest) and is refused in one line, never written or read."""
    dest = (Path(root) / rel).resolve()
    if not rel or Path(rel).is_absolute() or not dest.is_relative_to(Path(root).resolve()):
        raise StorageError(f"{what}: {rel!r} leads out of {root}: refused")
    return dest


class WorkRootBusy(StorageError):
    pass


class Lease:
    """The one-writer lease of a remote work root (`<url>/_lease.json`), or of one thing in it (`name`: the service's
    catalog), created with a conditional PUT."""

    def __init__(self, url: str, ttl_s: float | None = None, name: str = LEASE):
        self.fs, root = filesystem(url.rstrip("/"))
        self.path = f"{root}/{name}"
        self.url, self.name = url, name
        self.ttl_s = ttl_s if ttl_s is not None else float(os.environ.get("CURATE_LEASE_S", 6 * 3600))
        self.token = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._renewed = 0.0

    def _body(self) -> bytes:
        return json.dumps({"holder": self.token, "expires": time.time() + self.ttl_s}).encode()

    def check_free(self) -> None:
        """WorkRootBusy if another run holds the lease now (a check before starting; `acquire` decides)."""
        try:
            held = json.loads(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return
        except OSError as err:
            raise StorageError(f"{self.url}: {err}") from None
        if held.get("expires", 0) > time.time():
            raise WorkRootBusy(self._busy(held))

    def _busy(self, held: dict) -> str:
        return (f"{self.url} is in use by another run ({held.get('holder')}, lease until "
                f"{time.strftime('%H:%M:%S', time.localtime(held['expires']))}); try later, or delete "
                f"{self.url}/{self.name} if that run is dead")

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lease; held by another run, wait for it up to `wait_s` seconds, then WorkRootBusy."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self._acquire()
            except WorkRootBusy:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def _acquire(self) -> None:
        for _ in range(2):
            try:
                self.fs.pipe_file(self.path, self._body(), mode="create")
                self._renewed = time.time()
                return
            except FileExistsError:
                try:
                    held = json.loads(self.fs.cat_file(self.path))
                except (FileNotFoundError, ValueError):
                    continue  # released (or half-visible) meanwhile: try again
                if held.get("expires", 0) > time.time():
                    raise WorkRootBusy(self._busy(held)) from None
                self.fs.rm_file(self.path)  # expired: a killed run's
        raise WorkRootBusy(f"{self.url}: could not take the lease")

    def renew(self, force: bool = False) -> None:
        """Extend the lease (at most once a minute, or now with `force`), after checking it is still this run's."""
        if force or time.time() - self._renewed > 60:
            self.check_mine()
            self.fs.pipe_file(self.path, self._body())
            self._renewed = time.time()

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew the lease every third of its time (at most a minute) while the block runs, so a run longer than the
        lease keeps it; a lease found lost stops the renewals, and the push refuses (check_mine)."""
        import threading

        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(min(60.0, self.ttl_s / 3)):
                try:
                    self.renew(force=True)
                except (StorageError, OSError):
                    return

        thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def check_mine(self) -> None:
        try:
            held = json.loads(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            held = {}
        if held.get("holder") != self.token:
            raise WorkRootBusy(f"{self.url}: the lease was lost to {held.get('holder')} (this run was too slow)")

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if json.loads(self.fs.cat_file(self.path)).get("holder") == self.token:
                self.fs.rm_file(self.path)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def fetch_verified(fs, remote: str, dest: Path, sha256: str) -> None:
    """`remote` at `dest`, unless a copy with this sha256 is there already; a download of other bytes is refused."""

    if dest.is_file() and sha256_file(dest) == sha256:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.fetch.tmp")
    try:
        fs.get_file(remote, str(tmp))
        if (got := sha256_file(tmp)) != sha256:
            raise StorageError(f"{remote}: sha256 {got[:12]} is not the manifest's {sha256[:12]}: not used")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _newest_version(fs, folder: str, url: str) -> str:
    """The newest version file of a manifest folder on object storage."""
    import re

    try:
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False))
    except FileNotFoundError:
        names = []
    found = [n for n in names if re.fullmatch(r"v\d{4}\.json", n)]
    if not found:
        raise StorageError(f"{url} holds no version file (vNNNN.json): not a manifest folder")
    return f"{folder}/{found[-1]}"


REMOTE_RECORD = ".remote"


def remote_of(local_root: Path) -> str | None:
    """The object-storage URL whose dataset cache `local_root` is (fetch_manifest records it beside the folder), or
    None for a local dataset. A record whose URL does not hash to the folder's name is not believed."""
    local_root = Path(local_root)
    try:
        url = local_root.with_name(local_root.name + REMOTE_RECORD).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return url if cache_dir("datasets", url).resolve() == local_root.resolve() else None


def remote_sizes(url: str, rels: list[str]) -> dict[str, int | None]:
    """Size of each object `url/rel` (None: absent), by one listing per folder rather than a request per object."""
    fs, root = filesystem(url.rstrip("/"))
    listed: dict[str, dict[str, int]] = {}
    out = {}
    for rel in rels:
        folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if folder not in listed:
            try:
                found = fs.ls(f"{root}/{folder}".rstrip("/"), detail=True)
            except FileNotFoundError:
                found = []
            listed[folder] = {info["name"].rstrip("/").rsplit("/", 1)[-1]: int(info.get("size") or 0)
                              for info in found if info.get("type", "file") == "file"}
        out[rel] = listed[folder].get(rel.rsplit("/", 1)[-1])
    return out


def fetch_manifest(url: str) -> Path:
    """A manifest on object storage (a version file, or a manifests/<name> folder: its newest version) and its
    tokenizer, in a local cache that mirrors the work root's layout (the tokenizer checked against the manifest's
    sha256). Its shards are fetched when a reader opens them, through the dataset's bounded cache
    (tasks/train/shard_cache.py). Returns the local version file, which every reader takes as a local one."""

    fs, path = filesystem(url.rstrip("/"))
    if not path.endswith(".json"):
        path = _newest_version(fs, path, url)
    parts = path.split("/")
    if len(parts) < 4 or parts[-3] != "manifests":
        raise StorageError(f"{url}: a manifest lives at <work root>/manifests/<name>/vNNNN.json")
    root, rel_manifest = "/".join(parts[:-3]), "/".join(parts[-3:])
    root_url = f"{protocol_of(fs)}://{root}"
    local_root = cache_dir("datasets", root_url)
    local_manifest = local_root / rel_manifest
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise StorageError(f"manifest not found: {url}") from None
    manifest = Manifest.model_validate_json(data)
    if not Path(manifest.tokenizer.path).is_absolute():
        fetch_verified(fs, f"{root}/{manifest.tokenizer.path}",
                        inside(local_root, manifest.tokenizer.path, f"{url}: its tokenizer path"),
                        manifest.tokenizer.sha256)
    local_manifest.parent.mkdir(parents=True, exist_ok=True)
    _write_if_changed(local_root.with_name(local_root.name + REMOTE_RECORD), root_url.encode())
    _write_if_changed(local_manifest, data)
    return local_manifest


def _write_if_changed(dest: Path, data: bytes) -> None:
    if not (dest.is_file() and dest.read_bytes() == data):
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)

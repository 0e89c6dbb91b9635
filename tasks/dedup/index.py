"""The persistent dedup index: what every earlier corpus kept, so a new corpus is checked against it.

Layout under <work>/dedup/index/:
  registry.json                  corpora in registration order, their input fingerprints, the MinHash
                                 settings; written last, so a corpus is in the index only when complete
  exact/<corpus>.parquet         content_hash, id and corpus row of every kept document (in corpus order)
  bands/band=NN/<corpus>.parquet key (uint64), row: one LSH band of every kept document with shingles (`row`
                                 counts the kept documents, as the exact file's rows do)
The registry also names each corpus's ingest parts and their sizes, so verification reads the text of just the
rows a candidate pair names (the exact file's corpus row says which part and row hold it). Nothing is loaded whole into Python objects: a band is read as numpy
arrays, one band at a time. A lock file serialises runs.
"""
from __future__ import annotations

from curate.schemas.work_root import WorkRoot

import contextlib
import fcntl
import hashlib
import json
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.tasks.engine.files import atomic_path, write_json_atomic
from curate.tasks.engine.spool import present, readable, readable_all


class DedupIndexError(RuntimeError):
    """The index cannot be used as it is (missing or corrupt file, other settings, a held lock)."""


class DedupIndex:
    def __init__(self, work_root: Path, params: dict):
        self.root = WorkRoot(work_root).dedup_index()
        self.params = params
        self.registry_path = self.root / "registry.json"
        self.registry = self._load_registry()
        self._rows: dict[int, np.ndarray] = {}  # corpus rank -> its kept documents' rows in the corpus

    def _load_registry(self) -> dict:
        try:
            text = readable(self.registry_path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"params": self.params, "corpora": []}
        try:
            reg = json.loads(text)
            names = [c["name"] for c in reg["corpora"]]
        except (ValueError, KeyError, TypeError) as err:
            raise DedupIndexError(f"dedup index registry is corrupt: {self.registry_path} ({err}); "
                                  "refusing to reset dedup state — restore it or remove the index folder") from None
        if reg.get("params") != self.params:
            raise DedupIndexError(
                f"the dedup index at {self.root} was built with other settings {reg.get('params')}, not "
                f"{self.params}: use another work root, or remove {self.root} to rebuild it")
        assert len(set(names)) == len(names)
        return reg

    @property
    def corpora(self) -> list[str]:
        return [c["name"] for c in self.registry["corpora"]]

    def entry(self, name: str) -> dict | None:
        return next((c for c in self.registry["corpora"] if c["name"] == name), None)

    # --- reading -----------------------------------------------------------------------------------
    def _read(self, path: Path, columns: list[str]) -> pa.Table:
        """An index file, checked against the sha256 its corpus's registration recorded: a file replaced by another
        valid one would change decisions silently."""
        try:  # (one read, no existence check first: on object storage each is a request)
            data = readable(path).read_bytes()
        except FileNotFoundError:
            raise DedupIndexError(f"dedup index file missing: {path} (the registry lists its corpus)") from None
        want = self._sha256.get(path.relative_to(self.root).as_posix())
        if want and hashlib.sha256(data).hexdigest() != want:
            raise DedupIndexError(f"dedup index file changed: {path} is not the file its corpus registered (sha256 "
                                  f"{want[:12]}): restore it, or remove {self.root} to rebuild the index")
        try:
            return pq.read_table(pa.BufferReader(data), columns=columns)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise DedupIndexError(f"dedup index file is corrupt: {path} ({err})") from None

    @property
    def _sha256(self) -> dict[str, str]:
        return {rel: sha for c in self.registry["corpora"] for rel, sha in c.get("files", {}).items()}

    def _write(self, rel: str, table: pa.Table) -> str:
        """One index file, committed atomically; its sha256, which the registry records."""
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue().to_pybytes()
        with atomic_path(self.root / rel) as tmp:
            tmp.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def prefetch(self, bands: range | None = None) -> None:
        """The index files that `exact` (bands None) or `band` for each of `bands` will read, fetched together where
        the work root is on object storage (a local one: nothing to do)."""
        names = [f"exact/{name}.parquet" for name in self.corpora] if bands is None else \
            [f"bands/band={b:02d}/{name}.parquet" for b in bands for name in self.corpora]
        readable_all([self.root / rel for rel in names])

    def exact(self) -> pa.Table:
        """content_hash, id, corpus rank of every kept document of every registered corpus."""
        self.prefetch()
        parts = []
        for rank, name in enumerate(self.corpora):
            t = self._read(self.root / "exact" / f"{name}.parquet", ["content_hash", "id"])
            parts.append(t.append_column("rank", pa.array(np.full(len(t), rank, np.int32))))
        if not parts:
            return pa.table({"content_hash": pa.array([], pa.string()), "id": pa.array([], pa.string()),
                             "rank": pa.array([], pa.int32())})
        return pa.concat_tables(parts)

    def band(self, band: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys sorted, corpus rank, row) of one band over every registered corpus."""
        self.prefetch(range(band, band + 1))
        keys, ranks, rows = [], [], []
        for rank, name in enumerate(self.corpora):
            t = self._read(self.root / "bands" / f"band={band:02d}" / f"{name}.parquet", ["key", "row"])
            keys.append(t.column("key").to_numpy())
            rows.append(t.column("row").to_numpy())
            ranks.append(np.full(len(t), rank, np.int32))
        if not keys:
            return np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int32)
        k, c, r = np.concatenate(keys), np.concatenate(ranks), np.concatenate(rows)
        order = np.argsort(k, kind="stable")
        return k[order], c[order], r[order]

    def locate(self, rank: int, row: int) -> tuple[Path, int]:
        """The documents Parquet file and row that hold kept document `row` of a registered corpus."""
        entry = self.registry["corpora"][rank]
        work_root = self.root.parent.parent
        if entry.get("rows") == "ingest":  # the parts are the ingest parts: the kept document's corpus row
            row = int(self._corpus_rows(rank)[row])
        for rel, rows in entry["parts"]:
            if row < rows:
                path = work_root / rel
                if not present(path):
                    raise DedupIndexError(f"kept documents of corpus {entry['name']!r} missing: {path}")
                return path, row
            row -= rows
        raise DedupIndexError(f"dedup index row {row} beyond the kept documents of {entry['name']!r}")

    def _corpus_rows(self, rank: int) -> np.ndarray:
        if rank not in self._rows:
            path = self.root / "exact" / f"{self.corpora[rank]}.parquet"
            self._rows[rank] = self._read(path, ["row"]).column("row").to_numpy()
        return self._rows[rank]

    def ids(self, rank: int) -> pa.Array:
        return self._read(self.root / "exact" / f"{self.corpora[rank]}.parquet", ["id"]).column("id")

    # --- writing -----------------------------------------------------------------------------------
    def add(self, name: str, fingerprint: str, ids: pa.Array, hashes: pa.Array, corpus_rows: np.ndarray,
            rows: np.ndarray, keys: np.ndarray, parts: list[list], report: dict) -> None:
        """Register a corpus's kept documents (their ids, hashes and rows in the corpus; `parts` its ingest parts and
        their sizes). Files first, the registry (with the stage's report) last: it is the one commit point, so a
        crash before it leaves no trace and a crash after it leaves the stage done."""
        if self.entry(name):
            raise DedupIndexError(f"corpus {name!r} is already in the dedup index")
        files = {f"exact/{name}.parquet": self._write(f"exact/{name}.parquet", pa.table(
            {"content_hash": hashes, "id": ids, "row": pa.array(corpus_rows, pa.int64())}))}
        rows = np.asarray(rows, dtype=np.int32)  # the kept documents (in kept order) that have shingles, and
        for band in range(keys.shape[1]):         # their band keys, one row of `keys` each
            rel = f"bands/band={band:02d}/{name}.parquet"
            files[rel] = self._write(rel, pa.table({"key": keys[:, band], "row": rows}))
        self.registry["corpora"].append({"name": name, "fingerprint": fingerprint, "kept": len(ids), "parts": parts,
                                         "rows": "ingest", "files": files, "report": report})
        write_json_atomic(self.registry_path, self.registry)


@contextlib.contextmanager
def index_lock(work_root: Path, wait_seconds: float) -> Iterator[None]:
    """One run at a time updates the index: a second waits up to `wait_seconds`, then refuses."""
    path = WorkRoot(work_root).dedup_lock()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DedupIndexError(
                        f"another run holds the dedup index lock {path} (waited {wait_seconds:.0f} s): "
                        "wait for it to finish; two runs must not update one work root at once") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

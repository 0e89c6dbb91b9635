"""Near-duplicate candidates by band partition: the part of dedup's clustering that grows with the corpus, split across
workers.

A corpus's LSH bands are cut into contiguous groups, one task each (`near_candidates`, mapped on the run's task
runner: local processes or Dask). A group's task pairs the documents that share a band key (within the corpus: a
star to the bucket's first document by id; against earlier corpora: each hit in the index), measures each pair's
true Jaccard on its shingle sets, and writes the pairs with it. The clustering step merges every group's pairs and
unites the verified ones (Jaccard at least dedup.verify_min_similarity) with a union-find. Pairs are found and verified one by one and the union of the groups' pairs is the serial
path's pair set, so the clusters, and the kept set, are the same for any number of groups.

Memory of a group's task: its bands' keys, and the shingle sets of the documents its pairs name, read a Parquet batch
at a time; not the corpus's text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.schemas.config import DedupConfig
from curate.schemas.report import Part
from curate.schemas.work_root import WorkRoot
from curate.tasks.dedup.index import DedupIndex
from curate.tasks.dedup.minhash import text_shingles
from curate.tasks.engine.files import atomic_path, open_parquet
from curate.tasks.engine.spool import readable



def part_starts(parts: list[Part]) -> np.ndarray:
    """Row offsets of each ingest part in the corpus's concatenated order (a part holds `rows` documents)."""
    return np.cumsum([0] + [p.rows for p in parts])


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins (empty input, empty output)."""
    return np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])[: len(sorted_values)]


def band_groups(bands: int, groups: int) -> list[tuple[int, int]]:
    """`bands` cut into at most `groups` contiguous [lo, hi) ranges of near-equal size."""
    groups = max(1, min(groups, bands))
    edges = np.linspace(0, bands, groups + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class ShingleSets:
    """Unique shingle hashes of the documents that candidate pairs name, read and hashed on demand. A node below `n`
    is a row of this corpus; one at or above it is an earlier corpus's kept document, `node_info[node]` = (rank, row)."""

    def __init__(self, parts, work_root, index, node_info, n, ngram):
        self.parts, self.work_root, self.index, self.node_info, self.n, self.ngram = \
            parts, Path(work_root), index, node_info, n, ngram
        self.starts = part_starts(parts)
        self.cache: dict[int, np.ndarray] = {}
        self.pairs: dict[tuple[int, int], float] = {}

    def _where(self, node: int) -> tuple[Path, int]:
        if node < self.n:
            k = int(np.searchsorted(self.starts, node, side="right")) - 1
            return self.work_root / self.parts[k].docs_path, int(node - self.starts[k])
        return self.index.locate(*self.node_info[node])

    def prefetch(self, nodes) -> None:
        """Hash the shingles of these documents, reading each Parquet file once (one part at a time)."""
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for node in sorted(set(nodes) - set(self.cache)):
            path, row = self._where(node)
            by_file.setdefault(path, []).append((node, row))
        for path, wanted in by_file.items():  # a batch at a time: memory is a batch, not the part's text
            wanted.sort(key=lambda t: t[1])
            rows = np.array([r for _, r in wanted], dtype=np.int64)
            start, k = 0, 0
            for batch in open_parquet(path).iter_batches(batch_size=2000, columns=["text"]):
                stop = k + int(np.searchsorted(rows[k:], start + batch.num_rows))
                if stop > k:
                    texts = batch.column(0).take(pa.array(rows[k:stop] - start)).to_pylist()
                    for (node, _), text in zip(wanted[k:stop], texts):
                        self.cache[node] = text_shingles(text, self.ngram)
                    k = stop
                start += batch.num_rows

    def shingles(self, node: int) -> np.ndarray:
        if node not in self.cache:
            self.prefetch([node])
        return self.cache[node]

    def jaccard(self, a: int, b: int) -> float:
        key = (min(a, b), max(a, b))
        if key not in self.pairs:
            sa, sb = self.shingles(a), self.shingles(b)
            inter = len(np.intersect1d(sa, sb, assume_unique=True))
            self.pairs[key] = inter / max(1, len(sa) + len(sb) - inter)
        return self.pairs[key]


def candidate_pairs(keys: np.ndarray, key_pos: np.ndarray, alive: np.ndarray, id_rank: np.ndarray,
                    index: DedupIndex, bands: range) -> tuple[np.ndarray, np.ndarray]:
    """Pairs that share a key in one of `bands`: (a, b) within the corpus (a star to the bucket's first by id) and
    (doc, rank, row) against earlier corpora. `keys` holds the rows of documents with shingles (the columns of
    `bands` only, or all); key_pos maps a document to its row there."""
    new, old = [np.zeros((0, 2), np.int64)], [np.zeros((0, 3), np.int64)]
    live = np.flatnonzero(alive)
    index.prefetch(bands)  # (on object storage: every band file of the group fetched at once)
    for col, band in enumerate(bands):
        if not len(live):
            break
        k = keys[key_pos[live], col]
        order = np.lexsort((id_rank[live], k))
        ks, docs = k[order], live[order]
        same = ~run_starts(ks)
        first = np.maximum.accumulate(np.where(~same, np.arange(len(ks)), 0))
        new.append(np.stack([docs[first[same]], docs[same]], axis=1).astype(np.int64))
        old_k, old_rank, old_row = index.band(band)
        if len(old_k):
            pos = np.minimum(np.searchsorted(old_k, k), len(old_k) - 1)
            hit = old_k[pos] == k
            old.append(np.stack([live[hit], old_rank[pos[hit]], old_row[pos[hit]]], axis=1).astype(np.int64))
    return np.unique(np.concatenate(new), axis=0), np.unique(np.concatenate(old), axis=0)


CHUNK_NODES = 20_000  # documents whose shingle sets are held at once while pairs are measured


def with_similarity(new: np.ndarray, old: np.ndarray, sets: ShingleSets, old_node: dict[tuple[int, int], int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each pair with the true Jaccard of its shingle sets: rows (a, b, sim) and (doc, rank, row, sim). `old_node`
    maps an earlier corpus's (rank, row) to its node in `sets`. Pairs are measured a chunk at a time, the shingle
    sets of at most CHUNK_NODES documents held at once: memory is a chunk, not the corpus's candidates."""
    pairs = [*map(tuple, new.tolist()), *((d, old_node[(r, w)]) for d, r, w in old.tolist())]
    sims = np.empty(len(pairs), np.float64)
    i = 0
    while i < len(pairs):
        nodes: set[int] = set()
        j = i
        while j < len(pairs) and len(nodes) < CHUNK_NODES:
            nodes.update(pairs[j])
            j += 1
        sets.cache.clear()
        sets.prefetch(nodes)
        sims[i:j] = [sets.jaccard(a, b) for a, b in pairs[i:j]]
        i = j
    sets.cache.clear()
    return (np.column_stack([new, sims[:len(new)]]).reshape(-1, 3),
            np.column_stack([old, sims[len(new):]]).reshape(-1, 4))


def old_nodes(old: np.ndarray, n: int) -> dict[tuple[int, int], int]:
    """Node numbers for earlier corpora's documents: n, n+1, ... in (rank, row) order (the same for any grouping)."""
    refs = sorted({(int(r), int(w)) for r, w in old[:, 1:3].astype(np.int64).tolist()})
    return {ref: n + i for i, ref in enumerate(refs)}


def load_keys(parts: list[Part], work_root: Path, sig_path, bands: range | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band keys of the documents with shingles, only `bands`' columns if given; their corpus rows; shingle counts
    of all documents) over a corpus's parts, in part order."""
    keys, rows, counts = [], [], []
    for part, start in zip(parts, part_starts(parts)):
        with np.load(readable(sig_path(work_root, part))) as z:
            k = z["keys"]
            keys.append(k[:, bands.start:bands.stop] if bands is not None else k)
            rows.append(z["rows"] + start)
            counts.append(z["counts"])
    return np.concatenate(keys), np.concatenate(rows), np.concatenate(counts)


def key_positions(key_rows: np.ndarray, n: int) -> np.ndarray:
    key_pos = np.full(n, -1, np.int64)
    key_pos[key_rows] = np.arange(len(key_rows))
    return key_pos


def near_candidates(corpus: str, parts: list[Part], cfg: DedupConfig, work_root: str, lo: int, hi: int,
                    params: dict, sig_path) -> str:
    """One group's task: the verified near-duplicate pairs of bands [lo, hi), written beside the corpus's outputs.
    Reads what the coordinator prepared (alive documents, id ranks) and the index as it is now (the coordinator holds
    the index lock for the whole corpus)."""
    root = Path(work_root)
    with np.load(readable(WorkRoot(root).near_prep(corpus))) as z:
        alive, id_rank = z["alive"], z["id_rank"]
    n = len(alive)
    index = DedupIndex(root, params)
    keys, key_rows, _ = load_keys(parts, root, sig_path, range(lo, hi))
    new, old = candidate_pairs(keys, key_positions(key_rows, n), alive, id_rank, index, range(lo, hi))
    del keys
    nodes = old_nodes(old, n)
    sets = ShingleSets(parts, root, index, {v: k for k, v in nodes.items()}, n, cfg.ngram)
    new_s, old_s = with_similarity(new, old, sets, nodes)
    out = WorkRoot(root).near_group(corpus, lo, hi)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, new=new_s, old=old_s)
    return WorkRoot(root).relative(out)

"""Dedup: exact (content hash) and near (MinHash LSH) duplicates, within a corpus and against the index.

Two steps, so both cores work: `sign_part` computes signatures per ingest part (mapped across
processes); `dedup_corpus` then matches one corpus against itself and every earlier corpus, keeps one
document per cluster (earlier-registered corpus first, then smallest id), writes the kept documents and
the rejects, and registers the kept ones in the index. Decisions about earlier corpora never change.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.config import DedupConfig
from schemas.documents import REJECT_SCHEMA, excerpt
from schemas.documents import RejectReason as R
from schemas.report import DedupReport, FileResult
from tasks.dedup_index import DedupIndex, DedupIndexError, index_lock
from tasks.minhash import LSHParams, MinHasher, band_keys, lsh_params, shingle_hashes, word_hashes, words_of
from tasks.stage_task import stage_task
from tasks.workdir import atomic_path, file_fingerprint, read_json, write_json_atomic

STAGE = "dedup"


def index_params(cfg: DedupConfig) -> dict:
    """The settings that make signatures comparable: the index is valid only under the same ones."""
    lsh = lsh_params(cfg.threshold, cfg.num_perm, cfg.false_negative_weight)
    return {"ngram": cfg.ngram, "num_perm": cfg.num_perm, "seed": cfg.seed, "threshold": cfg.threshold,
            "verify_min_similarity": cfg.verify_min_similarity, "bands": lsh.bands, "rows": lsh.rows,
            "scheme": "affine32"}


def _params_hash(cfg: DedupConfig) -> str:
    return hashlib.sha256(json.dumps(index_params(cfg), sort_keys=True).encode()).hexdigest()[:16]


def sig_path(work_root: Path, part: FileResult) -> Path:
    name = Path(part.docs_path).name.replace(".docs.parquet", ".sig.npz")
    return Path(work_root) / STAGE / "sigs" / part.corpus / name


def sign_part(part: FileResult, cfg: DedupConfig, work_root: str | Path) -> str:
    """MinHash signatures of one ingest part, saved beside the index. Reused when part and settings match."""
    work_root = Path(work_root)
    src = work_root / part.docs_path
    out = sig_path(work_root, part)
    stamp = f"{file_fingerprint(src)}:{_params_hash(cfg)}"
    if out.exists() and read_json(out.with_suffix(".json")) == {"stamp": stamp}:
        return str(out)
    hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.ngram)
    sigs, counts = [], []
    for batch in pq.ParquetFile(src).iter_batches(columns=["text"], batch_size=1000):
        s, c = hasher.signatures(batch.column(0).to_pylist())
        sigs.append(s)
        counts.append(c)
    sig = np.concatenate(sigs) if sigs else np.zeros((0, cfg.num_perm), np.uint32)
    cnt = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, sigs=sig, counts=cnt)
    write_json_atomic(out.with_suffix(".json"), {"stamp": stamp})
    return str(out)


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins (empty input, empty output)."""
    return np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])[: len(sorted_values)]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _load_corpus(parts: list[FileResult], work_root: Path) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    tables, sigs, counts = [], [], []
    for part in parts:
        tables.append(pq.read_table(work_root / part.docs_path, columns=["id", "content_hash", "source_file", "line"]))
        with np.load(sig_path(work_root, part)) as z:
            sigs.append(z["sigs"])
            counts.append(z["counts"])
    meta = pa.concat_tables(tables) if tables else None
    return meta, np.concatenate(sigs), np.concatenate(counts)


def _part_starts(parts: list[FileResult]) -> np.ndarray:
    """Row offsets of each ingest part in the corpus's concatenated order (a part holds `kept` rows)."""
    return np.cumsum([0] + [p.kept for p in parts])


def _corpus_fingerprint(parts: list[FileResult], work_root: Path) -> str:
    h = hashlib.sha256()
    for part in sorted(parts, key=lambda p: p.docs_path):
        h.update(f"{part.docs_path}:{file_fingerprint(work_root / part.docs_path)};".encode())
    return h.hexdigest()


def _candidate_edges(keys: np.ndarray, alive: np.ndarray, id_rank: np.ndarray, index: DedupIndex,
                     n: int, old_nodes: dict[tuple[int, int], int]) -> np.ndarray:
    """Pairs that share a band key: new-new (star to the bucket's first by id) and new-old."""
    edges = []
    live = np.flatnonzero(alive)
    if len(live) == 0:
        return np.zeros((0, 2), np.int64)
    for band in range(keys.shape[1]):
        k = keys[live, band]
        order = np.lexsort((id_rank[live], k))
        ks, docs = k[order], live[order]
        same = ~_run_starts(ks)
        first = np.maximum.accumulate(np.where(~same, np.arange(len(ks)), 0))
        edges.append(np.stack([docs[first[same]], docs[same]], axis=1))
        old_k, old_rank, old_row = index.band(band)
        if len(old_k) and len(k):
            pos = np.minimum(np.searchsorted(old_k, k), len(old_k) - 1)
            hit = old_k[pos] == k
            for doc, r, row in zip(live[hit], old_rank[pos[hit]], old_row[pos[hit]]):
                node = old_nodes.setdefault((int(r), int(row)), n + len(old_nodes))
                edges.append(np.array([[doc, node]]))
    if not edges:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.concatenate(edges).astype(np.int64), axis=0)


def dedup_corpus(corpus: str, parts: list[FileResult], cfg: DedupConfig, work_root: str | Path) -> DedupReport:
    """Deduplicate one corpus against itself and the index; register what it keeps. Idempotent."""
    work_root = Path(work_root)
    out_dir = work_root / STAGE / corpus
    with index_lock(work_root, cfg.lock_wait_seconds):
        index = DedupIndex(work_root, index_params(cfg))
        fingerprint = _corpus_fingerprint(parts, work_root)
        entry = index.entry(corpus)
        if entry is not None:
            if entry["fingerprint"] != fingerprint:
                raise DedupIndexError(
                    f"corpus {corpus!r} is already in the dedup index with other content: earlier decisions never "
                    "change, so curate the new content under a new corpus name (NAME=PATH)")
            # The registry entry is the commit point and holds the report; _done.json is a copy for people.
            done = entry.get("report") or read_json(out_dir / "_done.json")
            if done is None:
                raise DedupIndexError(f"corpus {corpus!r} is in the dedup index without its report: remove "
                                      f"{index.root} to rebuild the index")
            return DedupReport.model_validate({**done, "reused": True})
        t0 = time.perf_counter()
        report = _decide_and_write(corpus, parts, cfg, work_root, index, fingerprint)
        write_json_atomic(out_dir / "_done.json", report.model_dump(mode="json"))
        return report


class _ShingleSets:
    """Unique shingle hashes of the documents that candidate pairs name, read and hashed on demand."""

    def __init__(self, parts, work_root, index, node_info, n, ngram):
        self.parts, self.work_root, self.index, self.node_info, self.n, self.ngram = \
            parts, work_root, index, node_info, n, ngram
        self.starts = _part_starts(parts)
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
        for path, wanted in by_file.items():
            texts = pq.read_table(path, columns=["text"]).column("text").take(pa.array([r for _, r in wanted]))
            for (node, _), text in zip(wanted, texts.to_pylist()):
                self.cache[node] = np.unique(shingle_hashes(word_hashes(words_of(text)), self.ngram))

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


def _decide_and_write(corpus, parts, cfg, work_root, index, fingerprint) -> DedupReport:
    t0 = time.perf_counter()
    meta, sigs, counts = _load_corpus(parts, work_root)
    n = len(meta)
    ids, hashes = meta.column("id").combine_chunks(), meta.column("content_hash").combine_chunks()
    id_rank = np.empty(n, np.int64)
    id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(n)
    dup_of: dict[int, tuple[str, str, float]] = {}  # doc → (reason, kept id, similarity)

    # exact: first against every earlier corpus, then within this one (smallest id kept)
    old_exact = index.exact()
    at = pc.index_in(hashes, value_set=old_exact.column("content_hash")).to_numpy(zero_copy_only=False)
    for doc in np.flatnonzero(~np.isnan(at.astype(float))):
        dup_of[int(doc)] = (R.EXACT_DUPLICATE, old_exact.column("id")[int(at[doc])].as_py(), 1.0)
    group = hashes.dictionary_encode().indices.to_numpy()
    order = np.lexsort((id_rank, group))
    first = _run_starts(group[order])
    keeper = order[np.maximum.accumulate(np.where(first, np.arange(n), 0))]
    for doc, keep in zip(order[~first], keeper[~first]):
        if int(doc) not in dup_of:
            dup_of[int(doc)] = (R.EXACT_DUPLICATE, ids[int(keep)].as_py(), 1.0)

    # near: LSH candidates, verified on signatures, union-find into clusters
    params = LSHParams(*(index_params(cfg)[k] for k in ("bands", "rows")))
    keys = band_keys(sigs, params)
    alive = (counts > 0) & ~np.isin(np.arange(n), list(dup_of))
    old_nodes: dict[tuple[int, int], int] = {}
    edges = _candidate_edges(keys, alive, id_rank, index, n, old_nodes)
    node_info = {v: k for k, v in old_nodes.items()}
    shingle_sets = _ShingleSets(parts, work_root, index, node_info, n, cfg.ngram)
    jaccard = shingle_sets.jaccard
    shingle_sets.prefetch(edges.ravel().tolist())

    uf = _UnionFind()
    for a, b in edges:  # candidates are verified on their true shingle-set Jaccard
        if jaccard(int(a), int(b)) >= cfg.verify_min_similarity:
            uf.union(int(a), int(b))
    clusters: dict[int, list[int]] = {}
    for node in set(uf.parent) | set(uf.parent.values()):
        clusters.setdefault(uf.find(node), []).append(node)
    old_ids: dict[int, pa.Array] = {}

    def priority(m: int) -> tuple:
        """Earlier-registered corpus first, then smallest id; this corpus ranks after every old one."""
        if m < n:
            return (len(index.corpora), int(id_rank[m]), "")
        rank, row = node_info[m]
        return (rank, 0, old_ids.setdefault(rank, index.ids(rank))[row].as_py())

    def node_id(m: int) -> str:
        return ids[m].as_py() if m < n else priority(m)[2]

    sizes: Counter[int] = Counter()
    largest: list[tuple[int, str]] = []
    for members in clusters.values():
        # Star refinement of the union-find cluster: the best-ranked member keeps the documents that are
        # similar to it; chained members (similar only through another) start a cluster of their own.
        remaining = sorted(set(members), key=priority)
        while remaining:
            keep, rest = remaining[0], remaining[1:]
            sims = [jaccard(m, keep) for m in rest]
            near = [(m, float(sim)) for m, sim in zip(rest, sims) if sim >= cfg.verify_min_similarity]
            remaining = [m for m, sim in zip(rest, sims) if sim < cfg.verify_min_similarity]
            rejected_here = [(m, sim) for m, sim in near if m < n]
            if not rejected_here:
                continue
            keep_id = node_id(keep)
            for m, sim in rejected_here:
                dup_of[m] = (R.NEAR_DUPLICATE, keep_id, sim)
            sizes[1 + len(rejected_here)] += 1
            largest.append((1 + len(rejected_here), keep_id))

    kept_mask = np.ones(n, bool)
    kept_mask[list(dup_of)] = False
    _write_outputs(corpus, parts, work_root, meta, dup_of, kept_mask)
    kept = np.flatnonzero(kept_mask)
    kept_parts = [[str(Path(STAGE) / corpus / Path(part.docs_path).name), int(kept_mask[a:b].sum())]
                  for part, a, b in zip(parts, _part_starts(parts)[:-1], _part_starts(parts)[1:])]
    reasons = Counter(r for r, _, _ in dup_of.values())
    report = DedupReport(
        corpus=corpus, docs_in=n, kept=int(kept_mask.sum()), rejected=len(dup_of),
        exact_duplicates=reasons[R.EXACT_DUPLICATE], near_duplicates=reasons[R.NEAR_DUPLICATE],
        too_short_for_minhash=int((counts == 0).sum()), candidate_pairs=len(edges),
        cluster_sizes={str(k): v for k, v in sorted(sizes.items())},
        largest_clusters=[{"size": s, "kept_id": i} for s, i in sorted(largest, key=lambda t: (-t[0], t[1]))[:5]],
        kept_paths=[str((work_root / STAGE / corpus / Path(p.docs_path).name).relative_to(work_root)) for p in parts],
        rejects_path=str((work_root / STAGE / corpus / "rejects.parquet").relative_to(work_root)),
        seconds=round(time.perf_counter() - t0, 3),
    )
    index.add(corpus, fingerprint, ids.take(pa.array(kept)), hashes.take(pa.array(kept)), counts[kept] > 0,
              keys[kept], kept_parts, report.model_dump(mode="json"))
    return report


def _write_outputs(corpus, parts, work_root, meta, dup_of, kept_mask) -> None:
    out_dir = work_root / STAGE / corpus
    offset = 0
    for part in parts:
        with atomic_path(out_dir / Path(part.docs_path).name) as tmp:
            src = pq.ParquetFile(work_root / part.docs_path)
            with pq.ParquetWriter(tmp, src.schema_arrow, compression="zstd", compression_level=1,
                                  use_dictionary=["corpus", "source_file", "lang"]) as w:
                for batch in src.iter_batches(batch_size=2000):
                    mask = kept_mask[offset: offset + batch.num_rows]
                    offset += batch.num_rows
                    w.write_table(pa.Table.from_batches([batch]).filter(pa.array(mask)))
    rows = []
    texts: dict[int, str | None] = {}
    start = 0
    rejected = np.array(sorted(dup_of), dtype=np.int64)
    for part in parts:  # excerpts of the rejected only, by row position
        pf = pq.ParquetFile(work_root / part.docs_path)
        end = start + pf.metadata.num_rows
        local = rejected[(rejected >= start) & (rejected < end)]
        if len(local):
            col = pf.read(columns=["text"]).column("text").take(pa.array(local - start))
            texts.update({int(d): excerpt(t) for d, t in zip(local, col.to_pylist())})
        start = end
    for doc in sorted(dup_of):
        reason, keep_id, sim = dup_of[doc]
        rid = meta.column("id")[doc].as_py()
        rows.append(dict(stage=STAGE, corpus=corpus, source_file=meta.column("source_file")[doc].as_py(),
                         line=meta.column("line")[doc].as_py(), id=rid, reason=reason,
                         detail=f"{reason.replace('_', ' ')} of {keep_id}", excerpt=texts.get(doc),
                         duplicate_of=keep_id, similarity=sim))
    with atomic_path(out_dir / "rejects.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), tmp, compression="zstd")


def make_dedup_tasks(retries: int):
    """The Prefect tasks: signatures mapped over parts (processes), clustering per corpus (in order)."""
    sign = stage_task(sign_part, "minhash-signatures", "minhash-{part.corpus}-{part.source_file}", retries)
    cluster = stage_task(dedup_corpus, "dedup-corpus", "dedup-{corpus}", retries)
    return sign, cluster

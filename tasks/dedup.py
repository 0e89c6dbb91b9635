"""Dedup: exact (content hash) and near (MinHash LSH) duplicates, within a corpus and against the index.

Two steps, so both cores work: `sign_part` computes signatures per ingest part (mapped across
processes); `dedup_corpus` then matches one corpus against itself and every earlier corpus, keeps one
document per cluster (earlier-registered corpus first, then smallest id), writes the kept documents and
the rejects, and registers the kept ones in the index. Decisions about earlier corpora never change.
"""
from __future__ import annotations

import hashlib
import itertools
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
    name = Path(part.docs_path).name.replace(".docs.parquet", ".bands.npz")
    return Path(work_root) / STAGE / "sigs" / part.corpus / name


def sign_reused(part: FileResult, cfg: DedupConfig, work_root: str | Path) -> str | None:
    """The band keys of an earlier signing of the same part under the same settings, if there."""
    out = sig_path(Path(work_root), part)
    if not out.exists() or read_json(out.with_suffix(".json")) != {
            "stamp": f"{file_fingerprint(Path(work_root) / part.docs_path)}:{_params_hash(cfg)}"}:
        return None
    return str(out)


def sign_part(part: FileResult, cfg: DedupConfig, work_root: str | Path) -> str:
    """LSH band keys of one ingest part's documents (those with at least one shingle), saved beside the index:
    a document's 128 signature values are reduced to its band keys at once, so what is kept per document is
    bands x 8 bytes (and nothing for a document too short to shingle). Reused when part and settings match."""
    if (reused := sign_reused(part, cfg, work_root)) is not None:
        return reused
    work_root = Path(work_root)
    src = work_root / part.docs_path
    out = sig_path(work_root, part)
    stamp = f"{file_fingerprint(src)}:{_params_hash(cfg)}"
    hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.ngram)
    params = LSHParams(*(index_params(cfg)[k] for k in ("bands", "rows")))
    keys, rows, counts, start = [], [], [], 0
    for batch in pq.ParquetFile(src).iter_batches(columns=["text"], batch_size=1000):
        s, c = hasher.signatures(batch.column(0).to_pylist())
        has = np.flatnonzero(c > 0)
        keys.append(band_keys(s[has], params))
        rows.append(has + start)
        counts.append(c.astype(np.int32))
        start += batch.num_rows
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.concatenate(keys) if keys else np.zeros((0, params.bands), np.uint64),
                     rows=np.concatenate(rows) if rows else np.zeros(0, np.int64),
                     counts=np.concatenate(counts) if counts else np.zeros(0, np.int32))
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


def _load_corpus(parts: list[FileResult], work_root: Path) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]:
    """(id, content hash, source file and line of every document; band keys of those with shingles; their rows;
    shingle counts of all) over a corpus's parts, in part order."""
    tables, keys, rows, counts, offset = [], [], [], [], 0
    for part in parts:
        tables.append(pq.read_table(work_root / part.docs_path,
                                    columns=["id", "content_hash", "source_file", "line", "url", "crawl_date"]))
        with np.load(sig_path(work_root, part)) as z:
            keys.append(z["keys"])
            rows.append(z["rows"] + offset)
            counts.append(z["counts"])
        offset += tables[-1].num_rows
    return pa.concat_tables(tables), np.concatenate(keys), np.concatenate(rows), np.concatenate(counts)


def _part_starts(parts: list[FileResult]) -> np.ndarray:
    """Row offsets of each ingest part in the corpus's concatenated order (a part holds `kept` rows)."""
    return np.cumsum([0] + [p.kept for p in parts])


def _corpus_fingerprint(parts: list[FileResult], work_root: Path) -> str:
    h = hashlib.sha256()
    for part in sorted(parts, key=lambda p: p.docs_path):
        h.update(f"{part.docs_path}:{file_fingerprint(work_root / part.docs_path)};".encode())
    return h.hexdigest()


def _candidate_edges(keys: np.ndarray, key_pos: np.ndarray, alive: np.ndarray, id_rank: np.ndarray,
                     index: DedupIndex, n: int, old_nodes: dict[tuple[int, int], int]) -> np.ndarray:
    """Pairs that share a band key: new-new (star to the bucket's first by id) and new-old. `keys` holds the rows
    of documents with shingles; key_pos maps a document to its row there."""
    edges = []
    live = np.flatnonzero(alive)
    if len(live) == 0:
        return np.zeros((0, 2), np.int64)
    for band in range(keys.shape[1]):
        k = keys[key_pos[live], band]
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
        for path, wanted in by_file.items():  # a batch at a time: memory is a batch, not the part's text
            wanted.sort(key=lambda t: t[1])
            rows = np.array([r for _, r in wanted], dtype=np.int64)
            start, k = 0, 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2000, columns=["text"]):
                stop = k + int(np.searchsorted(rows[k:], start + batch.num_rows))
                if stop > k:
                    texts = batch.column(0).take(pa.array(rows[k:stop] - start)).to_pylist()
                    for (node, _), text in zip(wanted[k:stop], texts):
                        self.cache[node] = np.unique(shingle_hashes(word_hashes(words_of(text)), self.ngram))
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


EXACT, NEAR, URL = 1, 2, 3  # codes of a document's fate in the per-document arrays (0: kept)
_REASONS = {EXACT: R.EXACT_DUPLICATE, NEAR: R.NEAR_DUPLICATE, URL: R.DUPLICATE_URL}
REJECT_CHUNK = 50_000  # reject rows built and written at a time: memory is a chunk, not the corpus


class _Fates:
    """Per document, as arrays (no Python object per document): kept or why not, and the kept twin."""

    def __init__(self, n: int):
        self.reason = np.zeros(n, np.int8)
        self.keep_doc = np.full(n, -1, np.int64)  # the twin in this corpus
        self.keep_old = np.full(n, -1, np.int64)  # the twin among earlier corpora's exact hashes
        self.sim = np.zeros(n, np.float32)
        self.near_keep: dict[int, str] = {}  # near duplicates: their kept twin's id (clusters are few)


def _decide_and_write(corpus, parts, cfg, work_root, index, fingerprint) -> DedupReport:
    t0 = time.perf_counter()
    meta, keys, key_rows, counts = _load_corpus(parts, work_root)
    n = len(meta)
    ids, hashes = meta.column("id").combine_chunks(), meta.column("content_hash").combine_chunks()
    id_rank = np.empty(n, np.int64)
    id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(n)
    fate = _Fates(n)

    # the same URL crawled more than once: its latest capture is kept (then the smallest id)
    urls = meta.column("url").combine_chunks()
    if urls.null_count < n:
        has = np.flatnonzero(~urls.is_null().to_numpy(zero_copy_only=False))
        group = urls.take(pa.array(has)).dictionary_encode().indices.to_numpy()
        dates = np.array(meta.column("crawl_date").combine_chunks().take(pa.array(has)).fill_null("").to_pylist())
        uniq, inv = np.unique(dates, return_inverse=True)
        date_rank = len(uniq) - 1 - inv  # 0: the latest capture (ISO 8601 dates sort as text)
        order = np.lexsort((id_rank[has], date_rank, group))
        first = _run_starts(group[order])
        keeper = has[order][np.maximum.accumulate(np.where(first, np.arange(len(has)), 0))]
        again = has[order][~first]
        fate.reason[again], fate.keep_doc[again], fate.sim[again] = URL, keeper[~first], 1.0

    # exact: first against every earlier corpus, then within this one (smallest id kept)
    old_exact = index.exact()
    at = pc.fill_null(pc.index_in(hashes, value_set=old_exact.column("content_hash")), -1).to_numpy()
    hit = (at >= 0) & (fate.reason == 0)
    fate.reason[hit], fate.keep_old[hit], fate.sim[hit] = EXACT, at[hit], 1.0
    group = hashes.dictionary_encode().indices.to_numpy()
    order = np.lexsort((id_rank, group))
    first = _run_starts(group[order])
    keeper = order[np.maximum.accumulate(np.where(first, np.arange(n), 0))]
    dups, keeps = order[~first], keeper[~first]
    fresh = fate.reason[dups] == 0
    fate.reason[dups[fresh]], fate.keep_doc[dups[fresh]], fate.sim[dups[fresh]] = EXACT, keeps[fresh], 1.0
    del group, order, first, keeper, dups, keeps, fresh, at, hit

    # near: LSH candidates, verified on shingle sets, union-find into clusters
    key_pos = np.full(n, -1, np.int64)
    key_pos[key_rows] = np.arange(len(key_rows))
    alive = (key_pos >= 0) & (fate.reason == 0)
    old_nodes: dict[tuple[int, int], int] = {}
    edges = _candidate_edges(keys, key_pos, alive, id_rank, index, n, old_nodes)
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
                fate.reason[m], fate.sim[m], fate.near_keep[m] = NEAR, sim, keep_id
            sizes[1 + len(rejected_here)] += 1
            largest.append((1 + len(rejected_here), keep_id))

    kept_mask = fate.reason == 0
    _write_outputs(corpus, parts, work_root, meta, fate, kept_mask, ids, old_exact.column("id"))
    kept = np.flatnonzero(kept_mask)
    kept_parts = [[str(Path(STAGE) / corpus / Path(part.docs_path).name), int(kept_mask[a:b].sum())]
                  for part, a, b in zip(parts, _part_starts(parts)[:-1], _part_starts(parts)[1:])]
    shingled = kept[key_pos[kept] >= 0]
    report = DedupReport(
        corpus=corpus, docs_in=n, kept=len(kept), rejected=int((~kept_mask).sum()),
        exact_duplicates=int((fate.reason == EXACT).sum()), near_duplicates=int((fate.reason == NEAR).sum()),
        duplicate_urls=int((fate.reason == URL).sum()),
        too_short_for_minhash=int((counts == 0).sum()), candidate_pairs=len(edges),
        cluster_sizes={str(k): v for k, v in sorted(sizes.items())},
        largest_clusters=[{"size": s, "kept_id": i} for s, i in sorted(largest, key=lambda t: (-t[0], t[1]))[:5]],
        kept_paths=[str((work_root / STAGE / corpus / Path(p.docs_path).name).relative_to(work_root)) for p in parts],
        rejects_path=str((work_root / STAGE / corpus / "rejects.parquet").relative_to(work_root)),
        seconds=round(time.perf_counter() - t0, 3),
    )
    index.add(corpus, fingerprint, ids.take(pa.array(kept)), hashes.take(pa.array(kept)),
              np.searchsorted(kept, shingled), keys[key_pos[shingled]], kept_parts, report.model_dump(mode="json"))
    return report


def _excerpts(parts: list[FileResult], work_root: Path, rows: np.ndarray):
    """(row, excerpt) of these increasing corpus rows, reading each part's text a batch at a time."""
    start, k = 0, 0
    for part in parts:
        for batch in pq.ParquetFile(work_root / part.docs_path).iter_batches(batch_size=2000, columns=["text"]):
            end = start + batch.num_rows
            stop = k + int(np.searchsorted(rows[k:], end))
            if stop > k:
                texts = batch.column(0).take(pa.array(rows[k:stop] - start)).to_pylist()
                yield from zip(rows[k:stop].tolist(), map(excerpt, texts))
                k = stop
            start = end


def _write_outputs(corpus, parts, work_root, meta, fate: _Fates, kept_mask, ids, old_ids) -> None:
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
    rejected = np.flatnonzero(~kept_mask)
    excerpts = _excerpts(parts, work_root, rejected)
    with atomic_path(out_dir / "rejects.parquet") as tmp, \
            pq.ParquetWriter(tmp, REJECT_SCHEMA, compression="zstd") as w:
        for c0 in range(0, len(rejected), REJECT_CHUNK):
            docs = rejected[c0: c0 + REJECT_CHUNK]
            take = pa.array(docs)
            twins = np.empty(len(docs), dtype=object)
            here, old, near = fate.keep_doc[docs] >= 0, fate.keep_old[docs] >= 0, fate.reason[docs] == NEAR
            twins[here] = ids.take(pa.array(fate.keep_doc[docs][here])).to_pylist()
            twins[old] = old_ids.take(pa.array(fate.keep_old[docs][old])).to_pylist()
            twins[near] = [fate.near_keep[d] for d in docs[near].tolist()]
            twins = twins.tolist()
            reasons = [_REASONS[int(r)] for r in fate.reason[docs]]
            w.write_table(pa.table({
                "stage": pa.array([STAGE] * len(docs)), "corpus": pa.array([corpus] * len(docs)),
                "source_file": meta.column("source_file").take(take), "line": meta.column("line").take(take),
                "id": ids.take(take), "reason": pa.array(reasons),
                "detail": pa.array([f"{r.replace('_', ' ')} of {t}" for r, t in zip(reasons, twins)]),
                "excerpt": pa.array([e for _, e in itertools.islice(excerpts, len(docs))], pa.string()),
                "duplicate_of": pa.array(twins), "similarity": pa.array(fate.sim[docs], pa.float32())},
                schema=REJECT_SCHEMA))


def make_dedup_tasks(retries: int):
    """The Prefect tasks: signatures mapped over parts (processes), clustering per corpus (in order)."""
    sign = stage_task(sign_part, "minhash-signatures", "minhash-{part.corpus}-{part.source_file}", retries)
    cluster = stage_task(dedup_corpus, "dedup-corpus", "dedup-{corpus}", retries)
    return sign, cluster

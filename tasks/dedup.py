"""Dedup: exact (content hash) and near (MinHash LSH) duplicates, within a corpus and against the index.

Two steps, so both cores work: `sign_part` computes signatures per ingest part (mapped across
processes); `dedup_corpus` then matches one corpus against itself and every earlier corpus, keeps one
document per cluster (earlier-registered corpus first, then smallest id), writes the kept documents and
the rejects, and registers the kept ones in the index. Decisions about earlier corpora never change.
"""
from __future__ import annotations

import contextlib
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

from curate.schemas.config import DedupConfig
from curate.schemas.documents import REJECT_SCHEMA, excerpt
from curate.schemas.documents import RejectReason as R
from curate.schemas.report import DedupReport, DocsPart, SignedPart
from curate.schemas.work_root import WorkRoot
from curate.tasks import dedup_candidates
from curate.tasks.dedup_candidates import (ShingleSets, band_groups, candidate_pairs, key_positions, load_keys,
                                    near_candidates, old_nodes, part_starts, run_starts, with_similarity)
from curate.tasks.dedup_index import DedupIndex, DedupIndexError, index_lock
from curate.tasks.minhash import LSHParams, MinHasher, band_keys, lsh_params
from curate.tasks.stage_task import PartStage, docs_part_size, stage_task
from curate.tasks.workdir import atomic_path, file_fingerprint, open_parquet, read_json, write_json_atomic

STAGE = "dedup"


def index_params(cfg: DedupConfig) -> dict:
    """The settings that make signatures comparable: the index is valid only under the same ones."""
    lsh = lsh_params(cfg.threshold, cfg.num_perm, cfg.false_negative_weight)
    return {"ngram": cfg.ngram, "num_perm": cfg.num_perm, "seed": cfg.seed, "threshold": cfg.threshold,
            "verify_min_similarity": cfg.verify_min_similarity, "bands": lsh.bands, "rows": lsh.rows,
            "scheme": "affine32"}


def _params_hash(cfg: DedupConfig) -> str:
    return hashlib.sha256(json.dumps(index_params(cfg), sort_keys=True).encode()).hexdigest()[:16]


def sig_path(work_root: Path, part: DocsPart) -> Path:
    name = Path(part.docs_path).name.replace(".docs.parquet", ".bands.npz")
    return WorkRoot(work_root).signatures(part.corpus, name)


def _sign_key(part: DocsPart, cfg: DedupConfig, work_root: str | Path) -> dict:
    return {"docs": file_fingerprint(Path(work_root) / part.docs_path), "params": _params_hash(cfg)}


def sign_part(part: DocsPart, cfg: DedupConfig, work_root: str | Path) -> SignedPart:
    """LSH band keys of one ingest part's documents (those with at least one shingle), saved beside the index:
    a document's 128 signature values are reduced to its band keys at once, so what is kept per document is
    bands x 8 bytes (and nothing for a document too short to shingle). Reused when part and settings match."""
    return SIGN.run(part, cfg, work_root)


def _sign(part: DocsPart, cfg: DedupConfig, work_root: str | Path, key: dict) -> SignedPart:
    work_root = Path(work_root)
    t0 = time.perf_counter()
    out = sig_path(work_root, part)
    hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.ngram)
    params = LSHParams(*(index_params(cfg)[k] for k in ("bands", "rows")))
    keys, rows, counts, start = [], [], [], 0
    for batch in open_parquet(work_root / part.docs_path).iter_batches(columns=["text"], batch_size=1000):
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
    return SignedPart(corpus=part.corpus, source_file=part.source_file, docs_path=part.docs_path,
                      path=str(out.relative_to(work_root)),
                      documents=start, signed=int(sum(len(r) for r in rows)), seconds=round(time.perf_counter() - t0, 3))


SIGN = PartStage(
    "minhash", SignedPart, _sign, _sign_key,
    done_path=lambda part, cfg, work_root: sig_path(Path(work_root), part).with_suffix(".json"),
    outputs=lambda res, work_root: [work_root / res.path],
    describe=lambda r: f"{r.docs_path}: {r.signed:,} of {r.documents:,} documents signed",
    size=docs_part_size)
sign_reused = SIGN.reused


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


def _corpus_fingerprint(parts: list[DocsPart], work_root: Path) -> str:
    h = hashlib.sha256()
    for part in sorted(parts, key=lambda p: p.docs_path):
        h.update(f"{part.docs_path}:{file_fingerprint(work_root / part.docs_path)};".encode())
    return h.hexdigest()


def dedup_corpus(corpus: str, parts: list[DocsPart], cfg: DedupConfig, work_root: str | Path,
                 candidates: list[str] | None = None, locked: bool = False) -> DedupReport:
    """Deduplicate one corpus against itself and the index; register what it keeps. Idempotent. `candidates`: the
    band groups' pair files (tasks/dedup_candidates.py), else the pairs are found here; `locked`: the caller holds
    the index lock already (across the groups' tasks)."""
    work_root = Path(work_root)
    out_dir = WorkRoot(work_root).stage(STAGE, corpus)
    with contextlib.nullcontext() if locked else index_lock(work_root, cfg.lock_wait_seconds):
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
        report = _decide_and_write(corpus, parts, cfg, work_root, index, fingerprint, candidates)
        write_json_atomic(out_dir / "_done.json", report.model_dump(mode="json"))
        for path in [WorkRoot(work_root).near_prep(corpus), *(candidates or [])]:  # the groups' hand-over, used up
            Path(path).unlink(missing_ok=True)
        return report


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


def _meta(parts: list[DocsPart], work_root: Path) -> pa.Table:
    """id, content hash, source file and line, url and crawl date of every document of a corpus, in part order."""
    return pa.concat_tables([pq.read_table(work_root / p.docs_path, columns=["id", "content_hash", "source_file",
                                                                            "line", "url", "crawl_date"])
                             for p in parts])


def _early_fates(meta: pa.Table, index: DedupIndex) -> tuple[_Fates, np.ndarray, pa.Table]:
    """The fates that need no MinHash: a URL crawled again, an exact duplicate (of an earlier corpus, then within
    this one). Returns (fates, each document's rank by id, the index's exact hashes)."""
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
        first = run_starts(group[order])
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
    first = run_starts(group[order])
    keeper = order[np.maximum.accumulate(np.where(first, np.arange(n), 0))]
    dups, keeps = order[~first], keeper[~first]
    fresh = fate.reason[dups] == 0
    fate.reason[dups[fresh]], fate.keep_doc[dups[fresh]], fate.sim[dups[fresh]] = EXACT, keeps[fresh], 1.0
    return fate, id_rank, old_exact


def _near_pairs(parts, cfg, work_root, index, alive, id_rank, keys, key_pos, candidates):
    """Every candidate pair with its Jaccard: measured here over all bands (the serial path), or merged from the band
    groups' files. Returns ((a, b, sim) rows, (doc, node, sim) rows, shingle sets, node -> (rank, row))."""
    n = len(alive)
    if candidates is None:
        new, old = candidate_pairs(keys, key_pos, alive, id_rank, index, range(keys.shape[1]))
        nodes = old_nodes(old, n)
        sets = ShingleSets(parts, work_root, index, {v: k for k, v in nodes.items()}, n, cfg.ngram)
        new_s, old_s = with_similarity(new, old, sets, nodes)
    else:
        groups = []
        for path in candidates:
            with np.load(path) as z:
                groups.append((z["new"], z["old"]))
        new_s = np.unique(np.concatenate([g[0] for g in groups]), axis=0)
        old_s = np.unique(np.concatenate([g[1] for g in groups]), axis=0)
        nodes = old_nodes(old_s, n)
        sets = ShingleSets(parts, work_root, index, {v: k for k, v in nodes.items()}, n, cfg.ngram)
    old_e = np.column_stack([old_s[:, 0], [nodes[(int(r), int(w))] for r, w in old_s[:, 1:3]], old_s[:, 3]]
                            ).reshape(-1, 3) if len(old_s) else np.zeros((0, 3))
    for a, b, sim in [*new_s.tolist(), *old_e.tolist()]:
        sets.pairs[(int(min(a, b)), int(max(a, b)))] = sim  # measured once; the clustering asks again
    return new_s, old_e, sets, {v: k for k, v in nodes.items()}


def prepare_near(corpus: str, parts: list[DocsPart], cfg: DedupConfig, work_root: str | Path,
                 groups: int) -> list[tuple[int, int]]:
    """Before the band groups run (the caller holds the index lock): which documents are still candidates after
    the URL and exact steps, and their id ranks, for the groups to read. Returns the band groups; none when the
    corpus is in the index already (its clustering is reused)."""
    work_root = Path(work_root)
    index = DedupIndex(work_root, index_params(cfg))
    if index.entry(corpus) is not None:
        return []
    meta = _meta(parts, work_root)
    fate, id_rank, _ = _early_fates(meta, index)
    _, key_rows, _ = load_keys(parts, work_root, sig_path, range(0))
    alive = (key_positions(key_rows, len(meta)) >= 0) & (fate.reason == 0)
    with atomic_path(WorkRoot(work_root).near_prep(corpus)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, alive=alive, id_rank=id_rank)
    return band_groups(lsh_params(cfg.threshold, cfg.num_perm, cfg.false_negative_weight).bands, groups)


def _decide_and_write(corpus, parts, cfg, work_root, index, fingerprint, candidates=None) -> DedupReport:
    t0 = time.perf_counter()
    out_dir = WorkRoot(work_root).stage(STAGE, corpus)
    meta = _meta(parts, work_root)
    n = len(meta)
    ids, hashes = meta.column("id").combine_chunks(), meta.column("content_hash").combine_chunks()
    fate, id_rank, old_exact = _early_fates(meta, index)
    keys, key_rows, counts = load_keys(parts, work_root, sig_path)  # every band: the index keeps them all
    key_pos = key_positions(key_rows, n)
    alive = (key_pos >= 0) & (fate.reason == 0)

    # near: LSH candidates (here, or by band group across workers), verified on shingle sets, union-find
    new_s, old_e, shingle_sets, node_info = _near_pairs(parts, cfg, work_root, index, alive, id_rank, keys, key_pos,
                                                        candidates)
    jaccard = shingle_sets.jaccard
    uf = _UnionFind()
    for a, b, sim in [*new_s.tolist(), *old_e.tolist()]:  # verified on their true shingle-set Jaccard
        if sim >= cfg.verify_min_similarity:
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
    for members in _prefetched(list(clusters.values()), shingle_sets):
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
                  for part, a, b in zip(parts, part_starts(parts)[:-1], part_starts(parts)[1:])]
    shingled = kept[key_pos[kept] >= 0]
    report = DedupReport(
        corpus=corpus, docs_in=n, kept=len(kept), rejected=int((~kept_mask).sum()),
        exact_duplicates=int((fate.reason == EXACT).sum()), near_duplicates=int((fate.reason == NEAR).sum()),
        duplicate_urls=int((fate.reason == URL).sum()),
        too_short_for_minhash=int((counts == 0).sum()), candidate_pairs=len(new_s) + len(old_e),
        cluster_sizes={str(k): v for k, v in sorted(sizes.items())},
        largest_clusters=[{"size": s, "kept_id": i} for s, i in sorted(largest, key=lambda t: (-t[0], t[1]))[:5]],
        kept_paths=[WorkRoot(work_root).relative(out_dir / Path(p.docs_path).name) for p in parts],
        rejects_path=WorkRoot(work_root).relative(out_dir / "rejects.parquet"),
        text_bytes_in=sum(p.text_bytes for p in parts), seconds=round(time.perf_counter() - t0, 3),
    )
    index.add(corpus, fingerprint, ids.take(pa.array(kept)), hashes.take(pa.array(kept)),
              np.searchsorted(kept, shingled), keys[key_pos[shingled]], kept_parts, report.model_dump(mode="json"))
    return report


def _prefetched(clusters: list[list[int]], sets: ShingleSets):
    """Each cluster, its members' shingle sets fetched with those of the next clusters, CHUNK_NODES documents at a
    time (each file read once per chunk): memory is a chunk, not every near-duplicate of the corpus."""
    i = 0
    while i < len(clusters):
        j, size = i, 0
        while j < len(clusters) and (j == i or size + len(clusters[j]) <= dedup_candidates.CHUNK_NODES):
            size += len(clusters[j])
            j += 1
        sets.cache.clear()
        sets.prefetch([m for members in clusters[i:j] for m in members])
        yield from clusters[i:j]
        i = j
    sets.cache.clear()


def _excerpts(parts: list[DocsPart], work_root: Path, rows: np.ndarray):
    """(row, excerpt) of these increasing corpus rows, reading each part's text a batch at a time."""
    start, k = 0, 0
    for part in parts:
        for batch in open_parquet(work_root / part.docs_path).iter_batches(batch_size=2000, columns=["text"]):
            end = start + batch.num_rows
            stop = k + int(np.searchsorted(rows[k:], end))
            if stop > k:
                texts = batch.column(0).take(pa.array(rows[k:stop] - start)).to_pylist()
                yield from zip(rows[k:stop].tolist(), map(excerpt, texts))
                k = stop
            start = end


def _write_outputs(corpus, parts, work_root, meta, fate: _Fates, kept_mask, ids, old_ids) -> None:
    out_dir = WorkRoot(work_root).stage(STAGE, corpus)
    offset = 0
    for part in parts:
        with atomic_path(out_dir / Path(part.docs_path).name) as tmp:
            src = open_parquet(work_root / part.docs_path)
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
    """The Prefect tasks: signatures mapped over parts, near-duplicate pairs mapped over band groups, clustering per
    corpus (in order)."""
    sign = stage_task(sign_part, "minhash-signatures", "minhash-{part.docs_path}", retries)
    cluster = stage_task(dedup_corpus, "dedup-corpus", "dedup-{corpus}", retries)
    near = stage_task(near_candidates_of, "dedup-near-candidates", "near-{corpus}-bands-{lo}-{hi}", retries)
    return sign, near, cluster


def near_candidates_of(corpus: str, parts: list[DocsPart], cfg: DedupConfig, work_root: str, lo: int, hi: int
                       ) -> str:
    """One band group's pairs (tasks/dedup_candidates.py), under this stage's settings and signature files."""
    return near_candidates(corpus, parts, cfg, work_root, lo, hi, index_params(cfg), sig_path)

"""Dedup: exact (content hash) and near (MinHash LSH) duplicates, within a corpus and against the index.

Three steps, so every worker works: `sign_part` computes signatures per ingest part; a corpus's band groups find its
candidate pairs (tasks/dedup/candidates.py, one task per group); `dedup_corpus` then matches the corpus against
itself and every earlier corpus, keeps one document per cluster (earlier-registered corpus first, then smallest id),
writes a verdict per document beside each part, and registers the kept ones in the index (its commit point).
Decisions about earlier corpora never change. `DEDUP` is the stage: corpora are clustered in registration order,
each as soon as its own parts are signed, while the other workers sign the next corpora's parts (`_schedule`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from curate.schemas.config import DedupConfig
from curate.schemas.documents import RejectReason as R
from curate.schemas.report import DedupReport, Part, SignedPart
from curate.schemas.work_root import WorkRoot
from curate.tasks.dedup import candidates as dedup_candidates
from curate.tasks.dedup.candidates import (ShingleSets, band_groups, candidate_pairs, key_positions, load_keys,
                                           near_candidates, old_nodes, part_starts, run_starts, with_similarity)
from curate.tasks.dedup.index import DedupIndex, DedupIndexError, index_lock
from curate.tasks.dedup.minhash import LSHParams, MinHasher, band_keys, lsh_params
from curate.tasks.engine.files import atomic_path, file_fingerprint, open_parquet, read_json, size_of, write_json_atomic
from curate.tasks.engine.spool import discard, present, readable
from curate.tasks.engine.stage import Job, Run, Stage, StageProgress, Step, TaskPool
from curate.tasks.engine.verdicts import verdict_table, verdicts_path
from curate.tasks.text.words import TOKENS

STAGE = "dedup"


def index_params(cfg: DedupConfig) -> dict:
    """The settings that make signatures comparable: the index is valid only under the same ones."""
    lsh = lsh_params(cfg.threshold, cfg.num_perm, cfg.false_negative_weight)
    return {"ngram": cfg.ngram, "num_perm": cfg.num_perm, "seed": cfg.seed, "threshold": cfg.threshold,
            "verify_min_similarity": cfg.verify_min_similarity, "bands": lsh.bands, "rows": lsh.rows,
            "scheme": "affine32", "tokens": TOKENS}


def _params_hash(cfg: DedupConfig) -> str:
    return hashlib.sha256(json.dumps(index_params(cfg), sort_keys=True).encode()).hexdigest()[:16]


def sig_path(work_root: Path, part: Part) -> Path:
    return WorkRoot(work_root).signatures(part.corpus, f"{part.name}.bands.npz")


def _sign_key(job: Job) -> dict:
    return {"docs": file_fingerprint(job.root / job.unit.docs_path), "params": _params_hash(job.settings)}


def sign_part(part: Part, cfg: DedupConfig, work_root: str | Path) -> SignedPart:
    """LSH band keys of one ingest part's documents (those with at least one shingle), saved beside the index:
    a document's 128 signature values are reduced to its band keys at once, so what is kept per document is
    bands x 8 bytes (and nothing for a document too short to shingle). Reused when part and settings match."""
    return SIGN.run(Job(part, cfg, str(work_root)))


def _sign(job: Job, key: dict) -> SignedPart:
    part, cfg, work_root = job.unit, job.settings, job.root
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
    return SignedPart(corpus=part.corpus, docs_path=part.docs_path, path=str(out.relative_to(work_root)),
                      documents=start, signed=int(sum(len(r) for r in rows)), seconds=round(time.perf_counter() - t0, 3))


SIGN = Step(
    "minhash", __name__, SignedPart, _sign, _sign_key,
    record=lambda job: sig_path(job.root, job.unit).with_suffix(".json"),
    outputs=lambda res, work_root: [work_root / res.path],
    describe=lambda r: f"{r.signed:,} of {r.documents:,} signed",
    size=lambda job: size_of(job.root / job.unit.docs_path))


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


def _corpus_fingerprint(parts: list[Part], work_root: Path) -> str:
    h = hashlib.sha256()
    for part in sorted(parts, key=lambda p: p.docs_path):
        h.update(f"{part.docs_path}:{file_fingerprint(work_root / part.docs_path)};".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CorpusParts:
    """One corpus's ingest parts: the unit of dedup's clustering (the corpus against itself and the index)."""

    corpus: str
    parts: tuple[Part, ...]
    candidates: tuple[str, ...] | None = None  # the band groups' pair files; None: the pairs are found here
    locked: bool = False  # the caller holds the index lock already (across the groups' tasks)


def dedup_corpus(corpus: str, parts: list[Part], cfg: DedupConfig, work_root: str | Path,
                 candidates: list[str] | None = None, locked: bool = False) -> DedupReport:
    """Deduplicate one corpus against itself and the index; register what it keeps. Idempotent."""
    unit = CorpusParts(corpus, tuple(parts), tuple(candidates) if candidates is not None else None, locked)
    return CLUSTER.run(Job(unit, cfg, str(work_root)))


def _cluster(job: Job, key: dict) -> DedupReport:
    unit, cfg, work_root = job.unit, job.settings, job.root
    out_dir = WorkRoot(work_root).stage(STAGE, unit.corpus)
    with contextlib.nullcontext() if unit.locked else index_lock(work_root, cfg.lock_wait_seconds):
        index = DedupIndex(work_root, index_params(cfg))
        fingerprint = _corpus_fingerprint(list(unit.parts), work_root)
        if index.entry(unit.corpus) is not None:
            return _registered(unit, index, fingerprint, work_root)
        report = _decide_and_write(_CorpusDocs.read(unit, work_root), cfg, index, fingerprint)
        write_json_atomic(out_dir / "_done.json", report.model_dump(mode="json"))
        for path in [WorkRoot(work_root).near_prep(unit.corpus), *(unit.candidates or [])]:  # hand-over, used up
            discard(Path(work_root) / path)
        return report


def _registered(unit: CorpusParts, index: DedupIndex, fingerprint: str, work_root: Path) -> DedupReport:
    """The report of a corpus already in the index (its registry entry is the commit point and holds the report);
    refused when the corpus now has other content, or its verdicts are not there."""
    entry = index.entry(unit.corpus)
    if entry["fingerprint"] != fingerprint:
        raise DedupIndexError(
            f"corpus {unit.corpus!r} is already in the dedup index with other content: earlier decisions never "
            "change, so curate the new content under a new corpus name (NAME=PATH)")
    done = entry.get("report") or read_json(WorkRoot(work_root).stage(STAGE, unit.corpus) / "_done.json")
    if done is None:
        raise DedupIndexError(f"corpus {unit.corpus!r} is in the dedup index without its report: remove "
                              f"{index.root} to rebuild the index")
    missing = [p for p in unit.parts if not present(verdicts_path(work_root, STAGE, p))]
    if missing:
        raise DedupIndexError(f"corpus {unit.corpus!r} is in the dedup index but its verdicts are missing "
                              f"({verdicts_path(work_root, STAGE, missing[0])}): a work root of an earlier layout, "
                              "which can be read (its manifests load) but not extended: curate into a new work root")
    return DedupReport.model_validate({**done, "reused": True})


CLUSTER = Step("dedup", __name__, DedupReport, _cluster,
               describe=lambda r: f"{r.docs_in:,} in, {r.kept:,} kept, {r.exact_duplicates:,} exact and "
               f"{r.near_duplicates:,} near duplicates" + (" (reused)" if r.reused else ""))


EXACT, NEAR, URL = 1, 2, 3  # codes of a document's fate in the per-document arrays (0: kept)
_REASONS = {EXACT: R.EXACT_DUPLICATE, NEAR: R.NEAR_DUPLICATE, URL: R.DUPLICATE_URL}


class _Fates:
    """Per document, as arrays (no Python object per document): kept or why not, and the kept twin."""

    def __init__(self, n: int):
        self.reason = np.zeros(n, np.int8)
        self.keep_doc = np.full(n, -1, np.int64)  # the twin in this corpus
        self.keep_old = np.full(n, -1, np.int64)  # the twin among earlier corpora's exact hashes
        self.sim = np.zeros(n, np.float32)
        self.near_keep: dict[int, str] = {}  # near duplicates: their kept twin's id (clusters are few)


def _meta(parts: list[Part] | tuple[Part, ...], work_root: Path) -> pa.Table:
    """id, content hash, url and crawl date of every document of a corpus, in part order."""
    return pa.concat_tables([pq.read_table(readable(work_root / p.docs_path), columns=["id", "content_hash", "url", "crawl_date"])
                             for p in parts])


@dataclass
class _CorpusDocs:
    """What the clustering holds of a corpus: its parts and every document's id, content hash, url and date."""

    corpus: str
    parts: list[Part]
    work_root: Path
    meta: pa.Table
    ids: pa.Array
    hashes: pa.Array

    @classmethod
    def read(cls, unit: CorpusParts, work_root: Path) -> "_CorpusDocs":
        meta = _meta(unit.parts, work_root)
        return cls(unit.corpus, list(unit.parts), work_root, meta, meta.column("id").combine_chunks(),
                   meta.column("content_hash").combine_chunks())

    @property
    def n(self) -> int:
        return len(self.meta)


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


@dataclass
class _NearPairs:
    """Every candidate pair with its Jaccard: (a, b, sim) within the corpus and (doc, node, sim) against earlier
    corpora's documents (node -> (rank, row) in `node_info`), and the shingle sets that measured them."""

    new: np.ndarray
    old: np.ndarray
    sets: ShingleSets
    node_info: dict[int, tuple[int, int]]


def _near_pairs(docs: _CorpusDocs, cfg: DedupConfig, index: DedupIndex, alive: np.ndarray, id_rank: np.ndarray,
                keys: np.ndarray, key_pos: np.ndarray, candidates: tuple[str, ...] | None) -> _NearPairs:
    """The candidate pairs measured here over all bands (the serial path), or merged from the band groups' files."""
    n = docs.n
    if candidates is None:
        new, old = candidate_pairs(keys, key_pos, alive, id_rank, index, range(keys.shape[1]))
        nodes = old_nodes(old, n)
        sets = ShingleSets(docs.parts, docs.work_root, index, {v: k for k, v in nodes.items()}, n, cfg.ngram)
        new_s, old_s = with_similarity(new, old, sets, nodes)
    else:
        groups = []
        for path in candidates:
            with np.load(readable(docs.work_root / path)) as z:
                groups.append((z["new"], z["old"]))
        new_s = np.unique(np.concatenate([g[0] for g in groups]), axis=0)
        old_s = np.unique(np.concatenate([g[1] for g in groups]), axis=0)
        nodes = old_nodes(old_s, n)
        sets = ShingleSets(docs.parts, docs.work_root, index, {v: k for k, v in nodes.items()}, n, cfg.ngram)
    old_e = np.column_stack([old_s[:, 0], [nodes[(int(r), int(w))] for r, w in old_s[:, 1:3]], old_s[:, 3]]
                            ).reshape(-1, 3) if len(old_s) else np.zeros((0, 3))
    for a, b, sim in [*new_s.tolist(), *old_e.tolist()]:
        sets.pairs[(int(min(a, b)), int(max(a, b)))] = sim  # measured once; the clustering asks again
    return _NearPairs(new_s, old_e, sets, {v: k for k, v in nodes.items()})


def prepare_near(corpus: str, parts: list[Part], cfg: DedupConfig, work_root: str | Path,
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


def _decide_and_write(docs: _CorpusDocs, cfg: DedupConfig, index: DedupIndex, fingerprint: str,
                      candidates: tuple[str, ...] | None = None) -> DedupReport:
    """Every document's fate (URL, exact, near), its verdict written beside its part, the kept ones registered."""
    t0 = time.perf_counter()
    fate, id_rank, old_exact = _early_fates(docs.meta, index)
    keys, key_rows, counts = load_keys(docs.parts, docs.work_root, sig_path)  # every band: the index keeps them all
    key_pos = key_positions(key_rows, docs.n)
    alive = (key_pos >= 0) & (fate.reason == 0)
    # near: LSH candidates (here, or by band group across workers), verified on shingle sets, union-find, refined
    near = _near_pairs(docs, cfg, index, alive, id_rank, keys, key_pos, candidates)
    sizes, largest = _refine(_clusters(near, cfg.verify_min_similarity), near, docs, index, id_rank, fate,
                             cfg.verify_min_similarity)
    kept_mask = fate.reason == 0
    paths = _write_verdicts(docs, fate, kept_mask, old_exact.column("id"))
    kept = np.flatnonzero(kept_mask)
    shingled = kept[key_pos[kept] >= 0]
    report = DedupReport(
        corpus=docs.corpus, docs_in=docs.n, kept=len(kept), rejected=int((~kept_mask).sum()),
        by_reason={r: int((fate.reason == code).sum()) for code, r in _REASONS.items() if (fate.reason == code).any()},
        exact_duplicates=int((fate.reason == EXACT).sum()), near_duplicates=int((fate.reason == NEAR).sum()),
        duplicate_urls=int((fate.reason == URL).sum()),
        too_short_for_minhash=int((counts == 0).sum()), candidate_pairs=len(near.new) + len(near.old),
        cluster_sizes={str(k): v for k, v in sorted(sizes.items())},
        largest_clusters=[{"size": s, "kept_id": i} for s, i in sorted(largest, key=lambda t: (-t[0], t[1]))[:5]],
        verdicts_paths=paths, text_bytes_in=sum(p.text_bytes for p in docs.parts),
        seconds=round(time.perf_counter() - t0, 3))
    index.add(docs.corpus, fingerprint, docs.ids.take(pa.array(kept)), docs.hashes.take(pa.array(kept)), kept,
              np.searchsorted(kept, shingled), keys[key_pos[shingled]],
              [[p.docs_path, p.rows] for p in docs.parts], report.model_dump(mode="json"))
    return report


def _clusters(near: _NearPairs, min_similarity: float) -> list[list[int]]:
    """The verified pairs (true shingle-set Jaccard at least `min_similarity`) joined by union-find."""
    uf = _UnionFind()
    for a, b, sim in [*near.new.tolist(), *near.old.tolist()]:
        if sim >= min_similarity:
            uf.union(int(a), int(b))
    clusters: dict[int, list[int]] = {}
    for node in set(uf.parent) | set(uf.parent.values()):
        clusters.setdefault(uf.find(node), []).append(node)
    return list(clusters.values())


def _refine(clusters: list[list[int]], near: _NearPairs, docs: _CorpusDocs, index: DedupIndex, id_rank: np.ndarray,
            fate: "_Fates", min_similarity: float) -> tuple[Counter, list[tuple[int, str]]]:
    """Star refinement of each union-find cluster: the best-ranked member keeps the documents similar to it; chained
    members (similar only through another) start a cluster of their own. Marks the near duplicates in `fate`;
    returns (cluster sizes, (size, kept id) of every cluster)."""
    n, old_ids = docs.n, {}

    def priority(m: int) -> tuple:
        """Earlier-registered corpus first, then smallest id; this corpus ranks after every old one."""
        if m < n:
            return (len(index.corpora), int(id_rank[m]), "")
        rank, row = near.node_info[m]
        return (rank, 0, old_ids.setdefault(rank, index.ids(rank))[row].as_py())

    sizes: Counter[int] = Counter()
    largest: list[tuple[int, str]] = []
    for members in _prefetched(clusters, near.sets):
        remaining = sorted(set(members), key=priority)
        while remaining:
            keep, rest = remaining[0], remaining[1:]
            sims = [near.sets.jaccard(m, keep) for m in rest]
            remaining = [m for m, sim in zip(rest, sims) if sim < min_similarity]
            rejected_here = [(m, float(sim)) for m, sim in zip(rest, sims) if sim >= min_similarity and m < n]
            if not rejected_here:
                continue
            keep_id = docs.ids[keep].as_py() if keep < n else priority(keep)[2]
            for m, sim in rejected_here:
                fate.reason[m], fate.sim[m], fate.near_keep[m] = NEAR, sim, keep_id
            sizes[1 + len(rejected_here)] += 1
            largest.append((1 + len(rejected_here), keep_id))
    return sizes, largest


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


def _write_verdicts(docs: _CorpusDocs, fate: "_Fates", kept_mask: np.ndarray, old_ids: pa.ChunkedArray) -> list[str]:
    """A verdict per document, a table per part beside it: kept, or why not with the kept twin and the similarity."""
    paths = []
    for part, start, stop in zip(docs.parts, part_starts(docs.parts)[:-1], part_starts(docs.parts)[1:]):
        rows = np.arange(start, stop)
        rejected = rows[~kept_mask[rows]]
        twins = np.full(len(rows), None, dtype=object)
        k = rejected - start
        here, old, near = fate.keep_doc[rejected] >= 0, fate.keep_old[rejected] >= 0, fate.reason[rejected] == NEAR
        twins[k[here]] = docs.ids.take(pa.array(fate.keep_doc[rejected][here])).to_pylist()
        twins[k[old]] = old_ids.take(pa.array(fate.keep_old[rejected][old])).to_pylist()
        twins[k[near]] = [fate.near_keep[d] for d in rejected[near].tolist()]
        reasons = [None if r == 0 else _REASONS[int(r)] for r in fate.reason[rows]]
        path = verdicts_path(docs.work_root, STAGE, part)
        with atomic_path(path) as tmp:
            pq.write_table(verdict_table(
                rows - start, docs.ids.slice(start, stop - start), kept_mask[rows], reasons,
                [r and f"{r.replace('_', ' ')} of {t}" for r, t in zip(reasons, twins)], twins.tolist(),
                [None if k else s for k, s in zip(kept_mask[rows].tolist(), fate.sim[rows].tolist())]),
                tmp, compression="zstd")
        paths.append(WorkRoot(docs.work_root).relative(path))
    return paths


def _schedule(stage: Stage, run: Run, jobs: list[Job]) -> list[DedupReport]:
    """Signatures per part, and each corpus against the index in registration order, on one pool: a corpus clusters
    as soon as its own parts are signed, while the other workers sign the next corpora's parts (its clustering is
    one task, and the other workers would idle beside it)."""
    signs = [run.job(p, job.settings, label=p.label) for job in jobs
             for p in sorted(job.unit.parts, key=lambda p: -p.text_bytes)]
    todo = [j for j in signs if SIGN.reused(j) is None]  # in registration order: the first corpus is ready first
    unsigned = Counter(j.unit.corpus for j in todo)
    progress = StageProgress(run, SIGN.name, len(signs), len(signs) - len(todo), SIGN.describe)
    pool, waiting, reports = TaskPool(run.runner, run.runner.width), list(jobs), {}
    try:
        while waiting or pool.flying:
            if pool.chain is None and waiting and not unsigned[waiting[0].unit.corpus]:
                pool.start(_cluster_steps(waiting.pop(0), run.runner.width))
            while todo and pool.filler_slots() > 0:
                pool.fill(SIGN, todo[0], todo[0])
                todo.pop(0)
            _done(pool.next_done(), unsigned, progress, reports, run, len(jobs))
    finally:
        pool.close()
    return [reports[job.unit.corpus] for job in jobs]


def _done(finished: tuple, unsigned: Counter, progress: StageProgress, reports: dict, run: Run, corpora: int) -> None:
    """What a finished task means: a part signed (its corpus is one part nearer its clustering), or a corpus done."""
    kind, job, result = finished
    if kind == "fill":
        unsigned[job.unit.corpus] -= 1
        progress.finished(result, job.label)
    elif kind == "chain":
        reports[result.corpus] = result
        run.log(f"dedup {result.corpus}: {CLUSTER.describe(result)}")
        run.progress(STAGE, len(reports), corpora, result.corpus)


def _cluster_steps(job: Job, slots: int):
    """One corpus against the index, as steps for the pool: its band groups' candidate pairs (a group per worker
    slot, with more than one), then its clustering, which registers it. The index lock is held across both: the index
    the groups read is the one the corpus joins. The clustering runs on a worker, not in the flow process: its memory
    follows the corpus, and the flow's stays flat."""
    unit, cfg = job.unit, job.settings
    with index_lock(job.root, cfg.lock_wait_seconds):
        groups = (yield [(PREPARE_NEAR, _with_unit(job, NearPrep(unit.corpus, unit.parts, slots)))])[0].groups \
            if slots > 1 else []
        pairs = (yield [(NEAR_GROUP, _with_unit(job, NearGroup(unit.corpus, unit.parts, lo, hi)))
                        for lo, hi in groups]) if groups else None
        locked = CorpusParts(unit.corpus, unit.parts, tuple(p.path for p in pairs) if pairs is not None else None,
                             locked=True)
        [report] = yield [(CLUSTER, _with_unit(job, locked))]
    return report


def _with_unit(job: Job, unit) -> Job:
    return Job(unit, job.settings, job.work_root, job.prepared, job.before, f"{job.label}:{type(unit).__name__}")


@dataclass(frozen=True)
class NearPrep:
    """What the band groups of a corpus read (its documents still candidates, their id ranks): one task, on a worker,
    where the corpus's parts are read."""

    corpus: str
    parts: tuple[Part, ...]
    groups: int


class _Groups(BaseModel):
    groups: list[tuple[int, int]]


def _prepare_near(job: Job, key: dict) -> _Groups:
    g = job.unit
    return _Groups(groups=prepare_near(g.corpus, list(g.parts), job.settings, job.root, g.groups))


PREPARE_NEAR = Step("near-prepare", __name__, _Groups, _prepare_near)


@dataclass(frozen=True)
class NearGroup:
    """One band group of a corpus: its candidate pairs are one task (tasks/dedup/candidates.py)."""

    corpus: str
    parts: tuple[Part, ...]
    lo: int
    hi: int


def _near_group(job: Job, key: dict) -> "_PairsFile":
    g = job.unit
    return _PairsFile(path=near_candidates(g.corpus, list(g.parts), job.settings, str(job.root), g.lo, g.hi,
                                           index_params(job.settings), sig_path))


class _PairsFile(BaseModel):
    path: str


NEAR_GROUP = Step("near-candidates", __name__, _PairsFile, _near_group)


def near_candidates_of(corpus: str, parts: list[Part], cfg: DedupConfig, work_root: str | Path, lo: int, hi: int
                       ) -> str:
    """One band group's verified pairs, as a plain function: the pair file's path."""
    return NEAR_GROUP.run(Job(NearGroup(corpus, tuple(parts), lo, hi), cfg, str(work_root))).path


def _jobs(run: Run) -> list[Job]:
    return [run.job(CorpusParts(c, tuple(run.parts[c])), run.cfg.dedup, label=c) for c in run.parts]


DEDUP = Stage(STAGE, CLUSTER, _jobs, enabled=lambda cfg: cfg.dedup.enabled, schedule=_schedule, filter=True,
              summary=DedupReport)

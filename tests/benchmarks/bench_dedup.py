#!/usr/bin/env python3
"""Dedup benchmark: speed, peak memory, precision and recall, ours against datatrove on the same documents.

Usage: python tests/benchmarks/bench_dedup.py [--docs 10000] [--workers 2] [--no-datatrove] [--keep DIR]
                                              [--cjk zh|ja [--repeat K]]
1. ../shared/bench/make_neardups.py builds real documents with edited copies and their true Jaccard; with --cjk,
   tests/benchmarks/make_cjk_neardups.py does the same in Chinese or Japanese with character edits (data/
   multilingual), and datatrove gets its word tokenizer for the language (spaCy with jieba for Chinese, SudachiPy
   for Japanese: `pip install jieba sudachipy sudachidict_core`).
2. Signature throughput on one core: our vectorised signatures vs datasketch MinHash.bulk, same docs.
3. The whole dedup stage (signatures on --workers processes, LSH, verification, union-find, writing
   outputs and the index) in a child process: wall time and peak RSS (children included).
4. datatrove's MinHash pipeline (signature → buckets → cluster → filter), same LSH bands × rows, when
   installed (`pip install -e '.[bench]'`).
Recall: of same-family pairs with true Jaccard >= 0.8, the share that end in one cluster.
Precision: of documents rejected as near duplicates, the share whose true Jaccard with the kept one >= 0.7.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

from tests.benchmarks.rss import run_measured  # noqa: E402

CHILD = r"""
import sys, json, time
sys.path.insert(0, {repo!r})
from concurrent.futures import ProcessPoolExecutor
from curate.schemas.config import DedupConfig
from curate.schemas.report import Part
from curate.tasks.dedup.dedup import sign_part, dedup_corpus
parts = [Part.model_validate(p) for p in json.load(open({parts!r}))]
cfg = DedupConfig()
t0 = time.perf_counter()
with ProcessPoolExecutor({workers}) as ex:
    list(ex.map(sign_part, parts, [cfg] * len(parts), [{work!r}] * len(parts)))
t1 = time.perf_counter()
rep = dedup_corpus("bench", parts, cfg, {work!r})
t2 = time.perf_counter()
print(json.dumps({{"sign_s": t1 - t0, "cluster_s": t2 - t1, "kept": rep.kept, "exact": rep.exact_duplicates,
                  "near": rep.near_duplicates}}))
"""


def load_neardups_module(cjk: str | None = None):
    path = REPO / "tests" / "benchmarks" / "make_cjk_neardups.py" if cjk else SHARED / "bench" / "make_neardups.py"
    spec = importlib.util.spec_from_file_location("make_neardups", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_set(out: Path, docs: int, cjk: str | None = None, repeat: int = 1) -> tuple[list[dict], list[dict]]:
    if cjk:
        subprocess.run([sys.executable, str(REPO / "tests" / "benchmarks" / "make_cjk_neardups.py"), str(out),
                        "--langs", cjk, "--repeat", str(repeat)], check=True, stdout=subprocess.DEVNULL)
    else:
        inputs = [str(SHARED / "corpora" / f"{n}.jsonl.gz") for n in ("code", "techdocs", "legal", "literature",
                                                                       "reference", "multilingual")]
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_neardups.py"), str(out), *inputs,
                        "--docs", str(docs)], check=True, stdout=subprocess.DEVNULL)
    with gzip.open(out / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    pairs = [json.loads(line) for line in open(out / "pairs.jsonl")]
    return records, pairs


def signature_speed(texts: list[str]) -> None:
    from datasketch import MinHash

    from curate.tasks.dedup.minhash import MinHasher, shingles_of

    mb = sum(len(t.encode()) for t in texts) / 1e6
    hasher = MinHasher()
    ours, bulk = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        hasher.signatures(texts)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        MinHash.bulk([[s.encode() for s in shingles_of(t, 5)] for t in texts], num_perm=128)
        bulk.append(time.perf_counter() - t0)
    o, b = sorted(ours)[1], sorted(bulk)[1]
    print(f"signatures, one core, {mb:.1f} MB, median of 3: ours {mb / o:.1f} MB/s, datasketch MinHash.bulk "
          f"{mb / b:.1f} MB/s, ratio {b / o:.1f}x   (targets: >= 10 MB/s, >= 3x)")


def run_ours(records: list[dict], tmp: Path, workers: int) -> tuple[dict, float, dict[str, str]]:
    import pyarrow.parquet as pq

    from curate.schemas.config import IngestConfig
    from curate.schemas.inputs import InputFile
    from curate.tasks.ingest.ingest import ingest_file

    src, work = tmp / "parts", tmp / "work"
    src.mkdir()
    n_parts = max(4, workers * 2)
    for k in range(n_parts):
        with gzip.open(src / f"part-{k:02d}.jsonl.gz", "wt", encoding="utf-8") as f:
            for r in records[k::n_parts]:
                f.write(json.dumps(r) + "\n")
    parts = [part.model_dump() for p in sorted(src.iterdir())
             for part in ingest_file(InputFile("bench", str(p), p.name), IngestConfig(), work).parts]
    (tmp / "parts.json").write_text(json.dumps(parts))
    code = CHILD.format(repo=str(REPO), parts=str(tmp / "parts.json"), work=str(work), workers=workers)
    out, wall, peak_mb, peak_sum = run_measured([sys.executable, "-c", code])
    stats = json.loads(out.strip().splitlines()[-1])
    stats["wall_s"], stats["peak_mb"], stats["peak_sum_mb"] = wall, peak_mb, peak_sum
    rep_of = {}
    verdicts = [v for p in sorted((work / "dedup" / "bench").glob("*.verdicts.parquet"))
                for v in pq.read_table(p).to_pylist()]
    for v in verdicts:
        rep_of[v["id"]] = v["id"]
    rejects = [v for v in verdicts if not v["kept"]]
    near = {}
    for r in rejects:
        rep_of[r["id"]] = r["duplicate_of"]
        if r["reason"] == "near_duplicate":
            near[r["id"]] = r["duplicate_of"]
    return stats, peak_mb, (rep_of, near)


def score(records, pairs, rep_of, near, mod) -> tuple[float, float, int]:
    def root(d):
        seen = set()
        while rep_of.get(d, d) != d and d not in seen:
            seen.add(d)
            d = rep_of[d]
        return d

    pos = [p for p in pairs if p["jaccard"] >= 0.8]
    recall = sum(root(p["a"]) == root(p["b"]) for p in pos) / max(1, len(pos))
    text = {r["id"]: r["text"] for r in records}
    good = sum(mod.jaccard(mod.shingles(text[d]), mod.shingles(text[k])) >= 0.7 for d, k in near.items())
    return recall, good / max(1, len(near)), len(pos)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument("--keep", help="keep the temporary folder here")
    ap.add_argument("--cjk", choices=["zh", "ja"], help="Chinese or Japanese with character edits")
    ap.add_argument("--repeat", type=int, default=1, help="--cjk: rounds over the pages (a larger set for speed)")
    args = ap.parse_args()
    mod = load_neardups_module(args.cjk)
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="bench-dedup-"))
    if tmp.exists() and args.keep:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    records, pairs = make_set(tmp / "set", args.docs, args.cjk, args.repeat)
    mb = sum(len(r["text"].encode()) for r in records) / 1e6
    print(f"near-duplicate set: {len(records):,} documents, {mb:.1f} MB, {len(pairs):,} same-family pairs")
    signature_speed([r["text"] for r in records[:3000]])
    stats, peak, (rep_of, near) = run_ours(records, tmp, args.workers)
    recall, precision, n_pos = score(records, pairs, rep_of, near, mod)
    rows = [("curate (ours)", stats["wall_s"], peak, recall, precision, stats["exact"] + stats["near"])]
    print(f"ours: signatures {stats['sign_s']:.1f} s on {args.workers} workers, clustering + writing "
          f"{stats['cluster_s']:.1f} s, {stats['exact']} exact + {stats['near']} near duplicates removed; "
          f"peak RSS {stats['peak_mb']:.0f} MB largest process, {stats['peak_sum_mb']:.0f} MB all processes")
    if not args.no_datatrove:
        try:
            from tests.benchmarks.datatrove_peer import run_datatrove
        except ImportError as err:
            print(f"datatrove not installed ({err}); pip install -e '.[bench]' to compare")
        else:
            from curate.tasks.dedup.dedup import index_params
            from curate.schemas.config import DedupConfig
            p = index_params(DedupConfig())  # the same LSH bands x rows as ours
            dt = run_datatrove(tmp / "parts", tmp / "datatrove", args.workers, p["bands"], p["rows"],
                               {"zh": "cmn", "ja": "jpn"}.get(args.cjk, "eng"))
            d_recall, d_precision, _ = score(records, pairs, dt["rep_of"], dt["near"], mod)
            rows.append(("datatrove 0.10.1", dt["wall_s"], dt["peak_mb"], d_recall, d_precision, len(dt["near"])))
            print(f"datatrove: peak RSS {dt['peak_mb']:.0f} MB largest process, {dt['peak_sum_mb']:.0f} MB all")
    print(f"\n{'pipeline':18} {'wall s':>8} {'MB/s':>7} {'peak RSS MB*':>12} {'recall@0.8':>11} "
          f"{'precision@0.7':>14} {'removed':>8}   ({n_pos} positive pairs)")
    for name, wall, pk, rc, pr, removed in rows:
        print(f"{name:18} {wall:8.1f} {mb / wall:7.1f} {pk:12.0f} {rc:11.3f} {pr:14.3f} {removed:8}")
    print("* the largest single process (workers included)")
    if len(rows) == 2:
        print(f"speed-up: {rows[1][1] / rows[0][1]:.1f}x datatrove (target >= 10x); peak memory target < 500 MB")
    if not args.keep:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

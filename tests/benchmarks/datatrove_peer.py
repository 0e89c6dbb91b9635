#!/usr/bin/env python3
"""datatrove's MinHash dedup (signature → buckets → cluster → filter) on a folder of JSONL parts.

Run by bench_dedup.py as a child process (datatrove's executor needs the __main__ guard):
  python datatrove_peer.py INPUT_DIR WORK_DIR WORKERS BANDS ROWS [LANGUAGE]
LANGUAGE picks datatrove's word tokenizer (eng, cmn: spaCy with jieba, jpn: SudachiPy).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def pipeline(inp: str, work: str, workers: int, bands: int, rows: int, language: str = "eng") -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    cfg = MinhashConfig(num_buckets=bands, hashes_per_bucket=rows, n_grams=5)
    n_files = len(list(Path(inp).glob("*.jsonl.gz")))
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupSignature(f"{work}/sigs", config=cfg,
                                                                                   language=language)],
                          tasks=n_files, workers=workers, logging_dir=f"{work}/logs/1", skip_completed=False).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
                          tasks=bands, workers=workers, logging_dir=f"{work}/logs/2", skip_completed=False).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg,
                                                        save_cluster_id=True)],
                          tasks=1, logging_dir=f"{work}/logs/3", skip_completed=False).run()
    LocalPipelineExecutor(pipeline=[JsonlReader(inp),
                                    MinhashDedupFilter(f"{work}/remove", load_cluster_ids=True,
                                                       exclusion_writer=JsonlWriter(f"{work}/removed")),
                                    JsonlWriter(f"{work}/kept")],
                          tasks=n_files, workers=workers, logging_dir=f"{work}/logs/4", skip_completed=False).run()


def run_datatrove(inp: Path, work: Path, workers: int, bands: int, rows: int, language: str = "eng") -> dict:
    """Run the pipeline in a child process; read back which document each removed one belongs with."""
    import gzip

    from tests.benchmarks.rss import run_measured

    _, wall, peak_one, peak_sum = run_measured(
        [sys.executable, __file__, str(inp), str(work), str(workers), str(bands), str(rows), language])

    def docs(folder: Path):
        for f in sorted(folder.glob("*.jsonl.gz")):
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)

    keeper = {}
    rep_of = {}
    for d in docs(work / "kept"):
        cid = d.get("metadata", {}).get("minhash_cluster_id")
        rep_of[d["id"]] = d["id"]
        if cid is not None:
            keeper[cid] = d["id"]
    near = {}
    for d in docs(work / "removed"):
        cid = d.get("metadata", {}).get("minhash_cluster_id")
        rep_of[d["id"]] = keeper.get(cid, d["id"])
        near[d["id"]] = rep_of[d["id"]]
    return {"wall_s": wall, "peak_mb": peak_one, "peak_sum_mb": peak_sum, "rep_of": rep_of, "near": near}


if __name__ == "__main__":
    inp, work, workers, bands, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    pipeline(inp, work, workers, bands, rows, *sys.argv[6:7])

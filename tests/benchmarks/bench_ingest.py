#!/usr/bin/env python3
"""Ingest throughput against the raw baseline (gzip decompress + orjson parse), same files, same run.

Usage: python tests/benchmarks/bench_ingest.py [--corpora ../shared/corpora] [--repeats 3] [--lid-chars N]
Prints, per file and in all, MB/s of document text for the baseline and for `ingest_file` (reading,
normalisation, language ID, hashing, writing Parquet) on one core, and their ratio (median of repeats).
Target (issue 2): ingest >= 40% of the baseline.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.schemas.config import IngestConfig  # noqa: E402
from curate.schemas.inputs import InputFile  # noqa: E402
from curate.tasks.ingest.ingest import PARQUET_OPTS, ingest_file  # noqa: E402
from curate.tasks.text.langid import identify  # noqa: E402
from curate.tasks.text.normalize import normalize_text  # noqa: E402


def baseline(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    with gzip.open(path, "rb") as f:
        for line in f:
            n += len(orjson.loads(line)["text"].encode("utf-8"))
    return time.perf_counter() - t0, n


def ingest(path: Path, cfg: IngestConfig) -> float:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t0 = time.perf_counter()
        ingest_file(InputFile("bench", str(path), path.name), cfg, work)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(work)


def fixed_steps(path: Path, cfg: IngestConfig) -> tuple[float, float]:
    """Two steps ingest cannot skip, timed alone on the file's documents (read and normalised outside the
    timers): language ID, and writing the texts as Parquet with ingest's settings."""
    with gzip.open(path, "rb") as f:
        texts = [normalize_text(orjson.loads(line)["text"]) for line in f]
    t0 = time.perf_counter()
    for i in range(0, len(texts), cfg.batch_size):
        identify(texts[i: i + cfg.batch_size], cfg.lid_max_chars)
    t1 = time.perf_counter()
    table = pa.table({"text": pa.array(texts, pa.large_string())})
    t2 = time.perf_counter()
    pq.write_table(table, pa.BufferOutputStream(), row_group_size=cfg.batch_size,
                   **{k: v for k, v in PARQUET_OPTS.items() if k != "use_dictionary"})
    return t1 - t0, time.perf_counter() - t2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lid-chars", type=int, default=IngestConfig().lid_max_chars)
    args = ap.parse_args()
    cfg = IngestConfig(lid_max_chars=args.lid_chars)
    identify(["warm the language-ID model up"], 100)
    files = sorted(Path(args.corpora).glob("*.jsonl.gz"))
    print(f"ingest vs baseline, one core, lid_max_chars={cfg.lid_max_chars}, median of {args.repeats}")
    print(f"{'file':24} {'text MB':>8} {'baseline MB/s':>14} {'ingest MB/s':>12} {'ratio':>6} {'lang-ID s':>10}"
          f" {'write s':>8}")
    tot_b = tot_i = tot_n = tot_l = tot_w = 0.0
    for path in files:
        b_times, i_times, l_times, w_times = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits both alike
            tb, n = baseline(path)
            b_times.append(tb)
            i_times.append(ingest(path, cfg))
            tl, tw = fixed_steps(path, cfg)
            l_times.append(tl)
            w_times.append(tw)
        tb, ti = statistics.median(b_times), statistics.median(i_times)
        tl, tw = statistics.median(l_times), statistics.median(w_times)
        tot_b, tot_i, tot_n, tot_l, tot_w = tot_b + tb, tot_i + ti, tot_n + n, tot_l + tl, tot_w + tw
        print(f"{path.name:24} {n / 1e6:8.1f} {n / tb / 1e6:14.1f} {n / ti / 1e6:12.1f} {tb / ti:6.2f} {tl:10.2f}"
              f" {tw:8.2f}")
    print(f"{'ALL':24} {tot_n / 1e6:8.1f} {tot_n / tot_b / 1e6:14.1f} {tot_n / tot_i / 1e6:12.1f} {tot_b / tot_i:6.2f}"
          f" {tot_l:10.2f} {tot_w:8.2f}")
    # ingest must read what the baseline reads, identify every document's language and write the texts
    print(f"ceiling if only reading and language ID cost: baseline / (baseline + lang-ID) = "
          f"{tot_b / (tot_b + tot_l):.2f}; and writing: {tot_b / (tot_b + tot_l + tot_w):.2f}")
    print(f"target: ratio >= 0.40 -> {'met' if tot_b / tot_i >= 0.40 else 'NOT met'}")


if __name__ == "__main__":
    main()

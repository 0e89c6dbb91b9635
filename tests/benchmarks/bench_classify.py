#!/usr/bin/env python3
"""Classify-stage throughput against fastText's raw predict on the same documents, same run, one core.

Usage: python tests/benchmarks/bench_classify.py [--corpora ../shared/corpora] [--docs 1500] [--repeats 3]

The documents: the first --docs records of each shared corpus, ingested once. The baseline is the pure
model cost: both models' `predict` on the prepared texts (preparation outside the timer). Then
`classify_part` over the same parts (reading Parquet, preparing text, both models, writing annotations
and rejects) in three configurations: models only, + PII, + heuristic rules (the default config).
Prints MB/s of document text per core and the ratio to raw predict (median of repeats).
Target (issue 4): the stage >= 60% of raw predict.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.schemas.config import ClassifyConfig, IngestConfig, PiiConfig  # noqa: E402
from curate.tasks.classify.fasttext_model import load_model, model_text  # noqa: E402
from curate.schemas.report import Part  # noqa: E402
from curate.tasks.classify.classify import classify_part  # noqa: E402
from curate.tasks.classify.models import resolve_models  # noqa: E402
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file  # noqa: E402


def ingest_heads(corpora: Path, docs: int, work: Path) -> list[Part]:
    refs = []
    for src in sorted(corpora.glob("*.jsonl.gz")):
        head = work / "src" / src.name
        head.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(src, "rb") as f, gzip.open(head, "wb", compresslevel=1) as out:
            out.writelines(itertools.islice(f, docs))
        res = ingest_file(InputFile(src.name.split(".")[0], str(head), src.name), IngestConfig(), work)
        refs.extend(res.parts)
    return refs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"))
    ap.add_argument("--docs", type=int, default=1500, help="records per corpus")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = ClassifyConfig()
    no_rules = {domain: [] for domain in base.rules}
    configs = {
        "stage, models only": ClassifyConfig(rules=no_rules, pii=PiiConfig(mode="off")),
        "stage + PII": ClassifyConfig(rules=no_rules),
        "stage + PII + rules": base,
    }
    models = resolve_models(base)
    work = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    try:
        refs = ingest_heads(Path(args.corpora), args.docs, work)
        texts = [t for r in refs for t in pq.read_table(work / r.docs_path, columns=["text"]).column("text").to_pylist()]
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        dom = load_model(models.domain_path)
        qual = load_model(models.quality_path)
        prepared = [model_text(t, base.max_chars) for t in texts]

        def raw_predict() -> None:
            for i in range(0, len(prepared), base.batch_size):
                dom.predict(prepared[i: i + base.batch_size], k=2)
                qual.predict(prepared[i: i + base.batch_size], k=2)

        def stage(cfg: ClassifyConfig) -> None:
            shutil.rmtree(work / "classify", ignore_errors=True)
            for ref in refs:
                classify_part(ref, cfg, models, work)

        runs = {"raw predict (both models)": raw_predict, **{name: functools.partial(stage, cfg)
                                                             for name, cfg in configs.items()}}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits all alike
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        raw = times["raw predict (both models)"]
        print(f"{len(texts):,} documents, {mb:.1f} MB of text, {len(refs)} parts; models read {base.max_chars} chars;"
              f" one core, median of {args.repeats} interleaved repeats (ratio: median of per-repeat ratios)")
        print(f"{'what':28} {'seconds':>8} {'MB/s':>8} {'ratio':>6}")
        for name, ts in times.items():
            s = statistics.median(ts)
            ratio = statistics.median(r / t for r, t in zip(raw, ts))
            print(f"{name:28} {s:8.2f} {mb / s:8.1f} {ratio:6.2f}")
        # what the target leaves for the work beyond the models, against what that work takes
        budget = statistics.median(r / 0.60 - m for r, m in zip(raw, times["stage, models only"]))
        spent = statistics.median(a - m for a, m in zip(times["stage + PII + rules"], times["stage, models only"]))
        left = f"{budget:.2f} s ({mb / budget:.0f} MB/s)" if budget > 0 else "no time at all"
        print(f"at the target, PII and rules may take {left}; they take {spent:.2f} s ({mb / spent:.0f} MB/s)")
        print("target: the stage >= 0.60 of raw predict")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Tokenize-stage throughput against sentencepiece's raw encode (same documents, same threads, same run),
(the loader's rate: bench_loader.py).

Usage: python tests/benchmarks/bench_tokenize.py [--corpora ../shared/corpora] [--docs 1500] [--repeats 5]

The documents: the first --docs records of each shared corpus, ingested and classified once. The baseline:
`encode_batch` (sentencepiece's batch encode with EOS, ids returned as numpy arrays: its fastest output, the
one the stage uses) over the kept texts in the stage's batch size. The stage: `tokenize_part` over
the same parts (reading Parquet and annotations, encoding, routing by domain and split, writing Arrow shards
with their sha256). MB/s of document text (medians) and the median of per-repeat ratios, for 1 and 2 threads.
Target (issue 5): the stage >= 90% of raw encode.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.schemas.config import ClassifyConfig, TokenizeConfig  # noqa: E402
from curate.tasks.classify.classify import classify_part  # noqa: E402
from curate.tasks.classify.models import resolve_models  # noqa: E402
from curate.tasks.tokens.tokenize import encode_batch, tokenize_part  # noqa: E402
from curate.tasks.tokens.tokenizer import balanced_sample, kept_documents, load_tokenizer, train_tokenizer  # noqa: E402
from tests.benchmarks.bench_classify import ingest_heads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"))
    ap.add_argument("--docs", type=int, default=1500, help="records per corpus (a part per corpus, as ingest makes a part per file)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    try:
        cc = ClassifyConfig()
        models = resolve_models(cc)
        refs = ingest_heads(Path(args.corpora), args.docs, work)
        for part in refs:
            classify_part(part, cc, models, work)
        tok = train_tokenizer(balanced_sample(work, refs, ("classify",), 2_000_000, 1), work / "tokenizer")
        sp, _ = load_tokenizer(tok.path)
        texts = [t for _, _, t in kept_documents(work, refs, ("classify",))]
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        print(f"{len(texts):,} kept documents, {mb:.1f} MB of text, vocab {tok.vocab_size:,}; median of {args.repeats}")
        print(f"{'threads':>7} {'raw encode MB/s':>16} {'stage MB/s':>11} {'ratio':>6}")
        for threads in (1, 2):
            cfg = TokenizeConfig(threads=threads)
            raw, stage = [], []

            def run_raw() -> None:
                t0 = time.perf_counter()
                for i in range(0, len(texts), cfg.batch_docs):
                    encode_batch(sp, texts[i: i + cfg.batch_docs], threads)
                raw.append(time.perf_counter() - t0)

            def run_stage() -> None:
                shutil.rmtree(work / "tokenize", ignore_errors=True)
                shutil.rmtree(work / "tokens", ignore_errors=True)
                t0 = time.perf_counter()
                for ref in refs:
                    tokenize_part(ref, tok.path, cfg, work)
                stage.append(time.perf_counter() - t0)

            for k in range(args.repeats):
                # alternate which runs first, so neither side always gets the warmer (or the throttled) slot
                for run in ((run_raw, run_stage) if k % 2 == 0 else (run_stage, run_raw)):
                    run()
            r, s = statistics.median(raw), statistics.median(stage)
            # paired: each repeat runs raw encode and the stage back to back; the median of their ratios
            # is steadier than a ratio of medians on a machine whose speed drifts between repeats
            paired = statistics.median(a / b for a, b in zip(raw, stage))
            print(f"{threads:>7} {mb / r:16.2f} {mb / s:11.2f} {paired:6.2f}   (per repeat: "
                  f"{', '.join(f'{a / b:.2f}' for a, b in zip(raw, stage))})")
        print("target: the stage >= 0.90 of raw encode")

    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

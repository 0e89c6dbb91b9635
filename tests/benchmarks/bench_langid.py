#!/usr/bin/env python3
"""Language ID: accuracy and time against how much of each document lid.176 reads, as-is or lower-cased.

Usage: python tests/benchmarks/bench_langid.py [--corpora ../shared/corpora] [--chars 200,300,400,500]

Every record of the shared corpora carries its language (`lang`); each is normalised as ingest does, then
labelled by lid.176.ftz from its first N characters, once as written and once lower-cased (what
tasks/text/langid.py does). Prints accuracy overall and per corpus, and predict seconds (one core).
"""
from __future__ import annotations

import argparse
import collections
import gzip
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.tasks.text.langid import _model  # noqa: E402
from curate.tasks.text.normalize import normalize_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"))
    ap.add_argument("--chars", default="200,300,400,500")
    args = ap.parse_args()
    docs = []
    for src in sorted(Path(args.corpora).glob("*.jsonl.gz")):
        with gzip.open(src, "rb") as f:
            for line in f:
                rec = orjson.loads(line)
                docs.append((src.name.split(".")[0], rec["lang"], normalize_text(rec["text"])))
    model = _model()
    model.predict(["warm the model up"], k=1)
    print(f"{len(docs):,} documents with a known language; lid.176.ftz, one core")
    corpora = sorted({c for c, _, _ in docs})
    print(f"{'chars':>5} {'text':10} {'seconds':>7} {'accuracy':>8}  " + " ".join(f"{c:>12}" for c in corpora))
    for chars in (int(c) for c in args.chars.split(",")):
        for name, prep in (("as-is", str), ("lower-case", str.lower)):
            heads = [prep(t[:chars].replace("\n", " ")) for _, _, t in docs]
            t0 = time.perf_counter()
            labels, _ = model.predict(heads, k=1)
            seconds = time.perf_counter() - t0
            right = collections.Counter()
            total = collections.Counter(c for c, _, _ in docs)
            for (corpus, lang, _), lab in zip(docs, labels):
                right[corpus] += lab[0].removeprefix("__label__") == lang
            acc = sum(right.values()) / len(docs)
            print(f"{chars:>5} {name:10} {seconds:7.2f} {acc:8.4f}  "
                  + " ".join(f"{right[c] / total[c]:12.3f}" for c in corpora))


if __name__ == "__main__":
    main()

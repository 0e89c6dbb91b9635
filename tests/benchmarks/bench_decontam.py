"""Decontamination throughput on the shared corpora against HumanEval, beside its floor measured in the same run
(interleaved, median of repeats): hashing the same text's tokens (tasks/text/words.token_hashes, in C), which any
n-gram test must do.

    python tests/benchmarks/bench_decontam.py [--docs 2000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.schemas.config import DecontamConfig  # noqa: E402
from curate.tasks.classify.decontam import build_index, match  # noqa: E402
from curate.tasks.text.words import token_hashes  # noqa: E402
from tests.benchmarks.timing import interleaved_medians  # noqa: E402

SHARED = REPO.parent / "shared" / "corpora"


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000, help="records per corpus")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    texts = []
    for f in sorted(SHARED.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for k, line in enumerate(fh):
                if k == args.docs:
                    break
                texts.append(json.loads(line)["text"])
    mb = sum(len(t.encode()) for t in texts) / 1e6
    cfg = DecontamConfig()
    with tempfile.TemporaryDirectory() as tmp:
        hashes, grams = build_index(cfg, Path(tmp)).load(Path(tmp))
    (f, o), (_, hits) = interleaved_medians(
        args.repeats, lambda: [token_hashes(t) for t in texts],
        lambda: sum(match(t, cfg.ngram, hashes, grams) is not None for t in texts))
    print(f"{len(texts):,} documents, {mb:.1f} MB, {len(hashes):,} HumanEval 13-grams; {hits} contaminated")
    print(f"floor (token hashes only): {mb / f:.1f} MB/s; decontamination: {mb / o:.1f} MB/s, {len(texts) / o:,.0f} docs/s; "
          f"ratio {f / o:.2f}")


if __name__ == "__main__":
    main()

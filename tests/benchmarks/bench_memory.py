"""Peak memory of ingest + dedup on many tiny documents (issue 15: 2,000,000 records once took 198 s and 4.2 GB).

    python tests/benchmarks/bench_memory.py [--records 2000000] [--dup-every 10]

Records are one-line texts of a few words (fewer than one 5-word shingle, the worst case for per-document
overhead), every `--dup-every`-th one an exact copy of an earlier one. The stages run as plain functions in a child
process whose peak RSS is sampled from /proc (tests/benchmarks/rss.py); the figures are printed beside the
corpus's size, with the 1 GB target.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.rss import run_measured  # noqa: E402

CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from curate.schemas.config import DedupConfig, IngestConfig
from curate.tasks.dedup.dedup import dedup_corpus, sign_part
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
work = Path({work!r})
t0 = time.perf_counter()
parts = ingest_file(InputFile("tiny", {src!r}, "tiny.jsonl"), IngestConfig(), work).parts
t1 = time.perf_counter()
for part in parts:
    sign_part(part, DedupConfig(), work)
rep = dedup_corpus("tiny", parts, DedupConfig(), work)
t2 = time.perf_counter()
print(json.dumps({{"docs_in": rep.docs_in, "kept": rep.kept, "exact": rep.exact_duplicates,
                  "ingest_s": t1 - t0, "dedup_s": t2 - t1}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--dup-every", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "tiny.jsonl"
        with open(src, "w") as f:
            for i in range(args.records):
                j = i - 1 if args.dup_every and i % args.dup_every == 0 and i else i
                f.write(json.dumps({"id": f"t{i}", "text": f"tiny note {j} here"}) + "\n")
        size = src.stat().st_size
        out, wall, peak, peak_sum = run_measured([sys.executable, "-c", CHILD.format(
            repo=str(REPO), work=str(Path(tmp) / "work"), src=str(src))])
        stats = json.loads(out.strip().splitlines()[-1])
    print(f"{args.records:,} tiny records ({size / 1e6:.0f} MB): ingest {stats['ingest_s']:.1f} s, dedup "
          f"{stats['dedup_s']:.1f} s, {stats['exact']:,} exact duplicates; peak RSS {peak:,.0f} MB "
          f"(target <= 1,024 MB), wall {wall:.0f} s")


if __name__ == "__main__":
    main()

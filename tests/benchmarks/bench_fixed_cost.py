"""The fixed cost of a run: `curate run` on the bundled sample when everything is reused (nothing new to do), wall
time including the CLI's imports and its temporary Prefect server, median of repeats (target: under 8 s).

    python tests/benchmarks/bench_fixed_cost.py [--repeats 5] [--work DIR]

Also printed: the flow's own share (report.json's seconds) and the first, cold run of the same command (with
`--work`, a work root `curate run` made from the bundled sample already: no cold run).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CURATE = Path(sys.executable).parent / "curate"


def run(out: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    t0 = time.perf_counter()
    subprocess.run([str(CURATE), "run", "--out", str(out)], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    return wall, json.loads((out / "report.json").read_text())["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", type=Path, help="a work root curated from the bundled sample (default: made here)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.work or Path(tmp) / "out"
        if not args.work:
            cold, cold_flow = run(out)
            print(f"cold run: {cold:.1f} s (flow {cold_flow:.1f} s)")
        walls, flows = zip(*(run(out) for _ in range(args.repeats)))
    print(f"nothing new to do: {statistics.median(walls):.2f} s wall, median of {args.repeats} "
          f"({min(walls):.2f}-{max(walls):.2f}); the flow itself {statistics.median(flows):.2f} s; target < 8 s")


if __name__ == "__main__":
    main()

"""End-to-end throughput of `curate run` with 1 and 2 worker processes, for the local runner and a local Dask
cluster (target: 2 workers at least 1.7x faster than 1 with Dask), on all of ../shared/corpora.

    python tests/benchmarks/bench_runner.py [--runners local,dask] [--repeats 1] [--corpora DIR]

Each run curates into a fresh work root; wall time is the command's, stage times come from its report.json, CPU
seconds are those of the command and every process it started (workers, the temporary server). Runs of one repeat go
in turn (local 1, local 2, dask 1, dask 2), so that the machine's drift falls on all of them. The ceiling is what 2
workers could reach if every CPU second of the 2-worker run were spread over this machine's cores: 1-worker wall over
(2-worker CPU seconds / cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CURATE = Path(sys.executable).parent / "curate"
CORPORA = REPO.parent / "shared" / "corpora"
STAGES = ("ingest", "dedup", "decontam", "classify", "tokenize")


def run(kind: str, workers: int, tmp: Path, corpora: Path) -> tuple[float, dict]:
    cfg = tmp / f"{kind}-{workers}.yaml"
    cfg.write_text(f"runner:\n  kind: {kind}\n  workers: {workers}\n")
    out = tmp / f"out-{kind}-{workers}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    t0, cpu0 = time.perf_counter(), _children_cpu()
    subprocess.run([str(CURATE), "run", *map(str, sorted(corpora.glob("*.jsonl.gz"))), "--out", str(out),
                    "--config", str(cfg)], env=env, check=True, capture_output=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    report = json.loads((out / "report.json").read_text())
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return wall, {t["stage"]: t["seconds"] for t in report["stage_times"]} | {"run": report["seconds"], "cpu": cpu}


def _children_cpu() -> float:
    """User and system seconds of every finished descendant (a process's own are added when its parent reaps it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runners", default="local,dask")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    args = ap.parse_args()
    kinds = args.runners.split(",")
    walls: dict[tuple[str, int], list[float]] = {}
    stages: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for kind in kinds:
                for workers in (1, 2):
                    wall, times = run(kind, workers, Path(tmp), args.corpora)
                    walls.setdefault((kind, workers), []).append(wall)
                    stages.setdefault((kind, workers), []).append(times)
                    print(f"{kind}, {workers} worker{'s' if workers > 1 else ''}: {wall:.1f} s", flush=True)
    cores = os.cpu_count() or 1
    print(f"\n| runner | wall s | run s | CPU s | {' | '.join(STAGES)} | speed-up | ceiling on {cores} cores |")
    print("|---|" + "---:|" * (len(STAGES) + 5))
    for kind in kinds:
        for workers in (1, 2):
            w = statistics.median(walls[kind, workers])
            med = {s: statistics.median(t.get(s, 0.0) for t in stages[kind, workers])
                   for s in (*STAGES, "run", "cpu")}
            w1 = statistics.median(walls[kind, 1])
            speed = f"**{w1 / w:.2f}x**" if workers == 2 else ""
            ceiling = f"{w1 / max(med['cpu'] / cores, w1 / workers):.2f}x" if workers == 2 else ""
            print(f"| {kind}, {workers} worker{'s' if workers > 1 else ''} | {w:.1f} | {med['run']:.1f} | "
                  f"{med['cpu']:.0f} | " + " | ".join(f"{med[s]:.1f}" for s in STAGES) + f" | {speed} | {ceiling} |")
    print(f"(median of {args.repeats}; target: dask 2 workers >= 1.70x its 1 worker)")


if __name__ == "__main__":
    main()

"""Peak resident memory of every process of `curate run` at 1x and Nx the shared corpora (target: flat, within 10%).

    python tests/benchmarks/bench_rss.py [--scales 1,4]

Scale k adds k - 1 copies of each corpus whose words are re-spelled by a seeded substitution (each word always
becomes the same other word of the corpus's vocabulary): the same sizes, lengths and shapes of text, but no copy is
a duplicate of another, so every stage does k times the work. Peak RSS is sampled from /proc for the CLI process and
each of its workers (tests/benchmarks/rss.py).
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.rss import LARGEST, PEAK_AT, run_measured  # noqa: E402

SHARED = REPO.parent / "shared" / "corpora"
WORD = re.compile(r"[A-Za-z]{3,}")


def scaled(src: Path, out: Path, k: int) -> Path:
    if out.exists():  # made by an earlier run with --inputs
        return out
    records = [json.loads(line) for line in gzip.open(src, "rt", encoding="utf-8")]
    vocab = sorted({w.lower() for r in records for w in WORD.findall(r.get("text", ""))})
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for copy in range(k):
            shuffled = vocab[:]
            random.Random(copy).shuffle(shuffled)
            table = dict(zip(vocab, shuffled)) if copy else {}
            for r in records:
                text = WORD.sub(lambda m: table.get(m.group(0).lower(), m.group(0)), r.get("text", "")) if copy \
                    else r.get("text", "")
                f.write(json.dumps({**r, "id": f"{r.get('id')}~{copy}", "text": text}) + "\n")
    tmp.rename(out)
    return out


def stage_ends(out: Path, started: float) -> str:
    """When each stage of the run ended, in seconds of the measured run (the flow starts `started` s in)."""
    report = json.loads((out / "report.json").read_text())
    t, ends = started, []
    for st in report["stage_times"]:
        t += st["seconds"]
        ends.append(f"{st['stage']} {t:.0f}")
    return ", ".join(ends)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--corpora", type=Path, default=SHARED)
    ap.add_argument("--inputs", type=Path, help="keep the k-fold inputs in this folder and reuse them next time")
    args = ap.parse_args()
    rows = []
    for k in map(int, args.scales.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = (args.inputs / f"{k}x") if args.inputs else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            files = [scaled(f, folder / f.name, k) for f in sorted(args.corpora.glob("*.jsonl.gz"))]
            mb = sum(f.stat().st_size for f in files) / 1e6
            _, wall, peak, peak_sum = run_measured([str(Path(sys.executable).parent / "curate"), "run",
                                                    *map(str, files), "--out", str(Path(tmp) / "out")])
            report = json.loads((Path(tmp) / "out" / "report.json").read_text())
            ends = stage_ends(Path(tmp) / "out", wall - report["seconds"])
        rows.append((k, mb, wall, peak, peak_sum))
        top = sorted(LARGEST.items(), key=lambda kv: -kv[1])[:4]
        print(f"{k}x ({mb:.0f} MB gzip'd): {wall:.0f} s, largest process {peak:,.0f} MB, all processes {peak_sum:,.0f} MB"
              f" (largest: {', '.join(f'{name} {mb_:,.0f} MB at {PEAK_AT[name]:.0f} s' for name, mb_ in top)};"
              f" stages ended at: {ends} s)", flush=True)
    base = rows[0][3]
    print("largest process relative to the first scale: " + ", ".join(f"{k}x {p / base:.2f}" for k, _, _, p, _ in rows)
          + " (target within 1.10)")


if __name__ == "__main__":
    main()

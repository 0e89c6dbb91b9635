"""`curate run` end to end on ../shared/corpora beside the raw-library floor measured in the same run.

    python tests/benchmarks/bench_end_to_end.py [--repeats 1]

The floor is what the libraries alone take, one core each, for the work no run can skip: decompress and parse
(gzip + orjson), language ID (lid.176.ftz, first 400 characters), MinHash signatures (the vectorised affine32 that
equals datasketch's), the domain model's predict (first 2,000 characters) and sentencepiece's encode of the kept
text (the work root's tokenizer), summed and divided by the machine's cores. The run is timed twice: with a
tokenizer supplied (what the floor covers) and training its own (a work root's first run also trains one).
"""
from __future__ import annotations

import argparse
import gzip
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

SHARED = REPO.parent / "shared" / "corpora"
CURATE = [str(Path(sys.executable).parent / "curate")]


def floor(files: list[Path], tokenizer: Path) -> dict[str, float]:
    from curate.schemas.config import ClassifyConfig
    from curate.tasks.classify.fasttext_model import load_model, model_text
    from curate.tasks.classify.models import resolve_models
    from curate.tasks.text.langid import identify
    from curate.tasks.dedup.minhash import MinHasher
    from curate.tasks.tokens.tokenize import encode_batch
    from curate.tasks.tokens.tokenizer import load_tokenizer

    t0 = time.process_time()
    texts = []
    for f in files:
        with gzip.open(f, "rb") as fh:
            texts += [orjson.loads(line).get("text", "") for line in fh]
    out = {"parse": time.process_time() - t0}
    t0 = time.process_time()
    for k in range(0, len(texts), 2000):
        identify(texts[k: k + 2000], 400)
    out["language ID"] = time.process_time() - t0
    hasher = MinHasher(128, 1, 5)
    t0 = time.process_time()
    for k in range(0, len(texts), 1000):
        hasher.signatures(texts[k: k + 1000])
    out["MinHash"] = time.process_time() - t0
    models = resolve_models(ClassifyConfig())
    model = load_model(models.domain_path)
    t0 = time.process_time()
    for k in range(0, len(texts), 1000):
        model.predict([model_text(t, 2000) for t in texts[k: k + 1000]], k=2)
    out["domain predict"] = time.process_time() - t0
    sp = load_tokenizer(tokenizer)[0]
    t0 = time.process_time()
    for k in range(0, len(texts), 256):
        encode_batch(sp, texts[k: k + 256], 1)
    out["encode"] = time.process_time() - t0
    return out


def run(files: list[Path], config: Path | None) -> tuple[float, float, float]:
    """(wall s, CPU s of the command and every process it started, peak RSS of the largest of them in MB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*CURATE, "run", *map(str, files), "--out", str(Path(tmp) / "out")]
        if config:
            cmd += ["--config", str(config)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return wall, cpu, after.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=Path, default=SHARED)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-training-run", action="store_true", help="time only the run with a tokenizer supplied")
    ap.add_argument("--curate", help="the command to time instead of this environment's `curate` (another build)")
    ap.add_argument("--tokenizer", type=Path, help="the tokenizer to supply (default: a first run's on two corpora)")
    args = ap.parse_args()
    if args.curate:
        CURATE[:] = shlex.split(args.curate)
    files = sorted(args.corpora.glob("*.jsonl.gz"))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:  # a tokenizer to supply: the first run's own
        if not args.tokenizer:
            subprocess.run([*CURATE, "run", *map(str, files[:2]), "--out", str(Path(tmp) / "w")], check=True,
                           capture_output=True,
                           env={k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")})
        tok = Path(tmp) / "tokenizer.model"
        tok.write_bytes((args.tokenizer or Path(tmp) / "w" / "tokenizer" / "tokenizer.model").read_bytes())
        cfg = Path(tmp) / "tok.yaml"
        cfg.write_text(f"tokenize:\n  tokenizer: {tok}\n")
        parts = floor(files, tok)
        supplied_runs = [run(files, cfg) for _ in range(args.repeats)]
        own_runs = [] if args.no_training_run else [run(files, None) for _ in range(args.repeats)]
    supplied, own = (statistics.median(r[0] for r in runs) if runs else float("nan")
                     for runs in (supplied_runs, own_runs))
    total = sum(parts.values())
    print("floor, CPU seconds on one core: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
          + f"; sum {total:.1f}, over {cores} cores {total / cores:.1f} s")
    print(f"curate run, tokenizer supplied: {supplied:.1f} s = {supplied / (total / cores):.2f}x the floor (target <= 2)")
    print(f"curate run, training its tokenizer: {own:.1f} s = {own / (total / cores):.2f}x")
    for what, runs in (("tokenizer supplied", supplied_runs), ("training its tokenizer", own_runs)):
        if not runs:
            continue
        print(f"  {what}: CPU s (median) {statistics.median(r[1] for r in runs):.1f}, largest process peak RSS "
              f"{max(r[2] for r in runs):.0f} MB; runs: " + ", ".join(f"{w:.1f} s / {c:.0f} CPU s" for w, c, _ in runs))


if __name__ == "__main__":
    main()

"""Which mixture wins, and can the proxy tell? Natural, uniform, UniMax, DoReMi, loss-softmax and RegMix on the shared
corpora, each trained as a fresh proxy with several seeds: per-domain held-out loss as mean ± spread, and how stable
the mixtures' ranking is across seeds (Spearman of the order under one seed against another, for every pair).

    python tests/benchmarks/bench_mixtures.py                      # the `rank` preset, 3 seeds, six mixtures
    python tests/benchmarks/bench_mixtures.py --search             # the ladder that chose the `rank` preset

The work root is bench-out/shared (curated from ../shared/corpora first if missing, as bench_loader does). Uniform
and UniMax are capped at the manifest's max_epochs (legal is 1.5% of the tokens). The learned mixtures are learned
with the same proxy settings they are then judged with. --search tries proxy settings from the cheapest up, on the
five mixtures of issue 21 (RegMix left out: its 16 runs cost more than the rest together), and stops at the first
whose every seed pair ranks them with Spearman >= 0.8 by worst-domain loss (the ranking by average loss is printed
beside it; on these corpora no setting tried made it stable: README, "How stable is a ranking"). Results: mixtures-<label>.json beside the work
root (bench-out/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loader import default_manifest  # noqa: E402
from curate.schemas.config import CurateConfig, MixConfig  # noqa: E402
from curate.schemas.proxy import PROXY_PRESETS, LearnConfig, ProxyConfig  # noqa: E402
from curate.tasks.learn import mixtures as lm  # noqa: E402
from curate.tasks.mix.manifest import build_manifest, collect_shards, latest_version, write_version  # noqa: E402
from curate.tasks.learn.noise import seed_pair_spearman  # noqa: E402
from curate.tasks.tokens.tokenizer import load_tokenizer, work_root_tokenizer  # noqa: E402

# From the cheapest up: tokens per step and steps grow; the 32,000-token vocabulary makes the output layer most of
# the cost, so the width stays small.
LADDER: list[dict] = [
    {"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 128, "batch_size": 8, "steps": 100, "lr": 3e-3,
     "warmup_steps": 10, "eval_interval": 25, "eval_blocks": 16},
    {"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 128, "batch_size": 8, "steps": 200, "lr": 3e-3,
     "warmup_steps": 10, "eval_interval": 50, "eval_blocks": 16},
    {"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 128, "batch_size": 16, "steps": 300, "lr": 3e-3,
     "warmup_steps": 20, "eval_interval": 75, "eval_blocks": 16},
    {"n_layer": 4, "n_head": 4, "n_embd": 128, "seq_len": 256, "batch_size": 8, "steps": 300, "lr": 2e-3,
     "warmup_steps": 20, "eval_interval": 75, "eval_blocks": 16},
]


def fixed_manifests(work: Path) -> list[Path]:
    """natural, uniform and UniMax over every shard of the work root (a version is written once, then reused)."""
    tok = load_tokenizer(work_root_tokenizer(work))[1]
    sha = CurateConfig().sha256()
    folder = work / "manifests" / "default"
    have = {}
    for p in sorted(folder.glob("v[0-9][0-9][0-9][0-9].json")):
        m = json.loads(p.read_text())
        have.setdefault((m["weights_provenance"]["method"], m["fingerprint"]), p)
    paths = []
    for method in ("natural", "uniform", "unimax"):
        manifest = build_manifest(collect_shards(work), tok, MixConfig(method=method, cap_epochs=True), sha,
                                  latest_version(work, "default") + 1)
        found = have.get((method, manifest.fingerprint))
        paths.append(found or write_version(work, manifest)[0])
    return paths


def learned_manifests(natural: Path, cfg: ProxyConfig, methods: list[str], workers: int) -> list[Path]:
    out = []
    for method in methods:
        t = time.perf_counter()
        _, path, _ = lm.learn_mixture(natural, cfg, LearnConfig(method=method), workers=workers)
        print(f"  learned {method} -> {path.name} in {time.perf_counter() - t:.0f} s", flush=True)
        out.append(path)
    return out


def judge(work: Path, cfg: ProxyConfig, seeds: int, methods: list[str], workers: int) -> dict:
    t0 = time.perf_counter()
    fixed = fixed_manifests(work)
    paths = fixed + learned_manifests(fixed[0], cfg, methods, workers)
    result, out = lm.compare_mixtures(paths, cfg, seeds=seeds)
    seconds = time.perf_counter() - t0
    stability = {key: seed_pair_spearman([[max(s.values()) if key == "worst" else sum(s.values()) / len(s)
                                           for s in r.losses_by_seed] for r in result.rows])
                 for key in ("average", "worst")}
    return {"config": cfg.model_dump(mode="json"), "seconds": round(seconds, 1), "seeds": result.seeds,
            "spearman_seed_pairs": {k: [round(v, 3) for v in vs] for k, vs in stability.items()},
            "rows": [r.model_dump(mode="json") for r in result.rows], "compare": str(out)}


def print_table(res: dict) -> None:
    rows = res["rows"]
    domains = sorted(rows[0]["losses"])
    print(f"\n{len(res['seeds'])} seeds, {res['config']['steps']} steps, {res['seconds']:.0f} s in all "
          "(held-out loss, nats/token, mean ± spread over seeds; lower is better)")
    print(f"{'mixture':<14}" + "".join(f"{d:>16}" for d in domains) + f"{'average':>18}{'worst':>26}")
    for r in sorted(rows, key=lambda r: r["average_loss"]):
        print(f"{r['method']:<14}" + "".join(f"{r['losses'][d]:>9.3f} ± {r['spread'][d]:.3f}" for d in domains)
              + f"{r['average_loss']:>9.3f} ± {r['average_spread']:.3f}{' ≈' if r['average_within_noise_of_best'] else '  '}"
              + f"  {r['worst_domain']:>10} {r['worst_loss']:.3f} ± {r['worst_spread']:.3f}"
              + (" ≈" if r["worst_within_noise_of_best"] else ""))
    print("weights:  " + "; ".join(f"{r['method']} " + " ".join(f"{d[:4]} {r['weights'][d]:.2f}" for d in domains)
                                   for r in rows))
    for key, vs in res["spearman_seed_pairs"].items():
        print(f"ranking by {key} loss, Spearman per seed pair: {vs} (min {min(vs):.2f})")
    print("≈: within the noise of the best (the difference is smaller than the larger spread)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="rank", choices=sorted(PROXY_PRESETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--search", action="store_true", help="find the cheapest settings whose ranking is stable")
    ap.add_argument("--workers", type=int, default=2, help="processes for RegMix's runs")
    ap.add_argument("--no-regmix", action="store_true", help="the five mixtures of the search only")
    ap.add_argument("--work", type=Path, help="a curated work root (default: bench-out/shared, made if missing)")
    ap.add_argument("--steps", type=int, help="override the preset's steps (a quick check; the figures need the preset)")
    args = ap.parse_args()
    work = args.work or default_manifest().parent.parent
    out_dir = work.parent  # bench-out/ for the default work root
    if args.search:
        for i, settings in enumerate(LADDER):
            cfg = ProxyConfig(**settings)
            print(f"\ncandidate {i}: {settings}", flush=True)
            res = judge(work, cfg, args.seeds, ["doremi", "loss-softmax"], args.workers)
            (out_dir / f"mixtures-search-{i}.json").write_text(json.dumps(res, indent=1))
            print_table(res)
            ok = min(res["spearman_seed_pairs"]["worst"]) >= 0.8
            print(f"candidate {i}: {'STABLE' if ok else 'not stable'} in {res['seconds']:.0f} s", flush=True)
            if ok:
                break
        return
    cfg = ProxyConfig(preset=args.preset, **({"steps": args.steps, "eval_interval": max(1, args.steps // 2)}
                                            if args.steps else {}))
    methods = ["doremi", "loss-softmax"] + ([] if args.no_regmix else ["regmix"])
    res = judge(work, cfg, args.seeds, methods, args.workers)
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"mixtures-{args.preset}{'-steps' + str(args.steps) if args.steps else ''}.json").write_text(
        json.dumps(res, indent=1))
    print_table(res)


if __name__ == "__main__":
    main()

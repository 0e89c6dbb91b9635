"""The loader's delivery rate on a manifest, beside the floor measured in the same run (median of repeats):

    python tests/benchmarks/bench_loader.py [--manifest DIR] [--repeats 3]

- raw read: every train shard memory-mapped and its token column read (pyarrow), tokens/s;
- + blocks: the same tokens cut into (seq_len + 1)-token blocks as torch tensors (the floor a loader cannot beat);
- MixtureDataset in process (ds.loader()), through its MixtureLoader with W workers (ds.loader(num_workers=W)) and,
  for the reason why that exists, through a plain DataLoader(ds, batch_size=B, num_workers=W): steady state (after
  the first batch) and start-up (time to the first batch) reported apart.

With no --manifest, the work root bench-out/shared is curated from ../shared/corpora first (minutes, once).

`--s3`: the same manifest streamed from object storage (a moto S3 server on loopback, started here), in process,
beside the local manifest in the same run: a cold cache, a warm one, and a cache of a quarter of the shards with
`shuffle_shards=1`, each with the bytes downloaded per byte of shards read and the number of downloads.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from curate.tasks.train.loader import MixtureDataset  # noqa: E402
from curate.tasks.train.manifests import load_manifest, resolve_manifest, shard_path  # noqa: E402

SHARED = REPO.parent / "shared" / "corpora"


def default_manifest() -> Path:
    work = REPO / "bench-out" / "shared"
    if not (work / "manifests" / "default").is_dir():
        files = sorted(str(p) for p in SHARED.glob("*.jsonl.gz"))
        subprocess.run([str(Path(sys.executable).parent / "curate"), "run", *files, "--out", str(work)], check=True)
    return work / "manifests" / "default"


def raw_read(path: Path, m) -> tuple[int, list[np.ndarray]]:
    values = []
    for src in m.sources:
        for ref in src.shards:
            table = ipc.open_stream(pa.memory_map(str(shard_path(path, ref.path)), "r")).read_all()
            values.append(table.column("tokens").combine_chunks().values.to_numpy())
    return sum(len(v) for v in values), values


def blocks(values: list[np.ndarray], seq: int) -> int:
    n = 0
    for v in values:
        k = len(v) // (seq + 1)
        for row in torch.from_numpy(v[: k * (seq + 1)].astype(np.int64)).view(k, seq + 1):
            n += row.numel()
    return n


def through(loader, limit: int) -> tuple[float, float]:
    """(tokens/s after the first batch, seconds to the first batch)."""
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t1 = time.perf_counter()
    n = 0
    for k, b in enumerate(it):
        n += b["input_ids"].numel() + b["input_ids"].shape[0]
        if k + 2 >= limit:
            break
    return n / (time.perf_counter() - t1), t1 - t0 + 0 * first["input_ids"].numel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=2000, help="batches per DataLoader measurement")
    ap.add_argument("--s3", action="store_true", help="stream the manifest from an S3 server on loopback instead")
    args = ap.parse_args()
    path = resolve_manifest(args.manifest or default_manifest())
    m = load_manifest(path)
    if args.s3:
        return streamed(path, m, args)
    seq = args.seq_len - 1  # samples of seq_len tokens: inputs seq, labels seq, block seq + 1
    w = args.workers
    rows: dict[str, list[float]] = {"raw read": [], "+ blocks": [], "in process": [], f"{w} workers": [],
                                    "start-up s": [], f"plain DataLoader, {w} workers": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n, values = raw_read(path, m)
        rows["raw read"].append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        rows["+ blocks"].append(blocks(values, seq) / (time.perf_counter() - t0))
        rows["in process"].append(through(MixtureDataset(path, seq_len=seq, batch_size=args.batch).loader(),
                                          args.batches)[0])
        rate, start = through(MixtureDataset(path, seq_len=seq, batch_size=args.batch).loader(num_workers=w),
                              args.batches)
        rows[f"{w} workers"].append(rate)
        rows["start-up s"].append(start)
        plain = DataLoader(MixtureDataset(path, seq_len=seq, batch_size=args.batch), batch_size=args.batch,
                           num_workers=w, multiprocessing_context="spawn")
        rows[f"plain DataLoader, {w} workers"].append(through(plain, min(args.batches, 300))[0])
    print(f"manifest {m.id}: {sum(s.available_tokens for s in m.sources):,} train tokens, "
          f"{sum(len(s.shards) for s in m.sources)} shards; sequences of {args.seq_len}, batch {args.batch}")
    for name, vals in rows.items():
        med = statistics.median(vals)
        spread = f"  ({min(vals) / (1 if name.endswith(' s') else 1e6):,.1f}-{max(vals) / (1 if name.endswith(' s') else 1e6):,.1f})"
        print(f"  {name:<28} {med:>10,.2f} s{spread}" if name.endswith(" s") else
              f"  {name:<28} {med / 1e6:>10,.1f} M tokens/s{spread}")
    blocks_rate = statistics.median(rows["+ blocks"])
    ratio = statistics.median(a / b for a, b in zip(rows[f"{w} workers"], rows["in process"]))
    inproc = statistics.median(rows["in process"])
    print(f"in process / (+ blocks): {inproc / blocks_rate:.2f} (target >= 0.5); {w} workers / in process, median of "
          f"per-repeat ratios: {ratio:.2f} (target >= 1.0)")


def _moto(path: Path, m) -> tuple[subprocess.Popen, str]:
    """A moto S3 server on loopback holding the manifest's work root (the version, its shards, its tokenizer)."""
    import os
    import urllib.request

    import fsspec

    from curate.flows.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    for _ in range(100):
        try:
            urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"], timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("bench")
    root = path.parent.parent.parent
    rels = [p.relative_to(root).as_posix() for p in (path, root / m.tokenizer.path)]
    rels += [r.path for s in m.sources for r in s.shards + s.validation_shards]
    for rel in rels:
        fs.put_file(str(root / rel), f"bench/work/{rel}")
    return proc, f"s3://bench/work/{path.relative_to(root).as_posix()}"


def streamed(path: Path, m, args) -> None:
    import os
    import tempfile
    import warnings

    from curate.tasks.engine import storage

    seq, fetched = args.seq_len - 1, []
    real = storage.fetch_verified

    def counted(fs, remote, dest, sha256):  # counts what is downloaded (a file there already with its sha256 is not)
        before = Path(dest).stat().st_mtime_ns if Path(dest).is_file() else None
        real(fs, remote, dest, sha256)
        if Path(dest).stat().st_mtime_ns != before:
            fetched.append(Path(dest).stat().st_size)

    storage.fetch_verified = counted
    import curate.tasks.train.shard_cache as shard_cache

    shard_cache.fetch_verified = counted
    proc, url = _moto(path, m)
    total = sum(r.bytes for s in m.sources for r in s.shards)
    try:
        local = statistics.median(through(MixtureDataset(path, seq_len=seq, batch_size=args.batch).loader(),
                                          args.batches)[0] for _ in range(args.repeats))
        print(f"manifest {m.id}: {total / 1e6:,.1f} MB of train shards; local in process {local / 1e6:,.1f} M tokens/s")
        with tempfile.TemporaryDirectory() as cache:
            os.environ["CURATE_CACHE"] = cache
            for label, kwargs, limit in (("cold cache", {}, None), ("warm cache", {}, None),
                                         ("cache of 1/4, shuffle_shards=1", {"shuffle_shards": 1}, total // 4)):
                if limit:
                    os.environ["CURATE_CACHE_BYTES"] = str(limit)
                    os.environ["CURATE_CACHE"] = tempfile.mkdtemp(dir=cache)
                fetched.clear()
                with warnings.catch_warnings():  # the small cache's warning: that is the point here
                    warnings.simplefilter("ignore")
                    ds = MixtureDataset(url, seq_len=seq, batch_size=args.batch, **kwargs)
                rate, start = through(ds.loader(), args.batches)
                print(f"  s3, {label:<32} {rate / 1e6:8,.1f} M tokens/s ({rate / local:.2f}x local), first batch "
                      f"{start:.2f} s, {len(fetched)} downloads, {sum(fetched) / 1e6:,.1f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()

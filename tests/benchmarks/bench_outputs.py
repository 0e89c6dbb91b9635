"""What a work root holds, in a form two builds of curate can be compared on, and the bytes it took to write it.

    python tests/benchmarks/bench_outputs.py digest WORK_ROOT > a.json   # kept ids, rejects, tokens, bytes
    python tests/benchmarks/bench_outputs.py compare a.json b.json       # identical? (exit 1 when not)
    python tests/benchmarks/bench_outputs.py run [--corpora DIR] OUT     # curate run into OUT, then its digest

Reads only what every layout of the work root has had: the token shards (Arrow IPC streams) and report.json. So a
digest from before a change of layout compares with one from after it:
- the ids each corpus kept (the documents in its shards), and each one's token sequence (sha256 of its tokens);
- the rejects per corpus and reason, and docs in / kept / rejected;
- bytes under the work root per top-level folder, and per byte of text ingest kept; the bytes of documents files
  (`*.docs.parquet`, which hold the text) per byte of text: how often the text is written.
Shard file names are not compared: they carry content keys that a change of layout may change.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "corpora"


def _bytes_by_folder(root: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for dirpath, _, names in os.walk(root):
        top = Path(dirpath).relative_to(root).parts[:1]
        key = top[0] if top else "."
        sizes[key] = sizes.get(key, 0) + sum((Path(dirpath) / n).stat().st_size for n in names)
    return dict(sorted(sizes.items()))


def digest(root: Path) -> dict:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    report = json.loads((root / "report.json").read_text())
    tokens: dict[str, str] = {}
    for shard in sorted((root / "tokens").rglob("*.arrow")):
        table = ipc.open_stream(pa.memory_map(str(shard))).read_all()
        domain, split = shard.relative_to(root / "tokens").parts[:2]
        for doc_id, corpus, toks in zip(table.column("doc_id").to_pylist(), table.column("corpus").to_pylist(),
                                        table.column("tokens").to_pylist()):
            key = f"{corpus}/{doc_id}"
            assert key not in tokens, f"{key} is in two shards"
            tokens[key] = f"{domain}/{split}/" + hashlib.sha256(json.dumps(toks).encode()).hexdigest()[:16]
    kept: dict[str, int] = {}
    for key in tokens:
        kept[key.split("/", 1)[0]] = kept.get(key.split("/", 1)[0], 0) + 1
    text = sum(c["text_bytes"] for c in report["corpora"])
    sizes = _bytes_by_folder(root)
    docs = sum(p.stat().st_size for p in root.rglob("*.docs.parquet"))  # documents with their text, wherever written
    return {
        "corpora": {c["corpus"]: {"docs_in": c["docs_in"], "kept": c["kept"], "rejected": c["rejected"],
                                  "by_reason": c["by_reason"], "in_shards": kept.get(c["corpus"], 0)}
                    for c in report["corpora"]},
        "tokens": tokens,
        "ingest_text_bytes": text,
        "bytes_by_folder": sizes,
        "bytes_per_text_byte": round(sum(sizes.values()) / max(1, text), 3),
        "documents_bytes_per_text_byte": round(docs / max(1, text), 3),
    }


def compare(a: dict, b: dict) -> list[str]:
    diffs = []
    if a["corpora"] != b["corpora"]:
        for name in sorted(set(a["corpora"]) | set(b["corpora"])):
            if a["corpora"].get(name) != b["corpora"].get(name):
                diffs.append(f"corpus {name}: {a['corpora'].get(name)} != {b['corpora'].get(name)}")
    only_a, only_b = set(a["tokens"]) - set(b["tokens"]), set(b["tokens"]) - set(a["tokens"])
    if only_a or only_b:
        diffs.append(f"kept ids differ: {len(only_a)} only in the first ({sorted(only_a)[:3]}), {len(only_b)} only in "
                     f"the second ({sorted(only_b)[:3]})")
    changed = [k for k in set(a["tokens"]) & set(b["tokens"]) if a["tokens"][k] != b["tokens"][k]]
    if changed:
        diffs.append(f"{len(changed)} documents' tokens (or domain/split) differ, e.g. {sorted(changed)[:3]}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("digest")
    d.add_argument("work_root", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--corpora", type=Path, default=SHARED, help="a folder of corpora (default ../shared/corpora); "
                   "'sample' for the bundled sample")
    args = ap.parse_args()
    if args.cmd == "digest":
        print(json.dumps(digest(args.work_root), indent=1, sort_keys=True))
        return 0
    if args.cmd == "compare":
        a, b = json.loads(args.a.read_text()), json.loads(args.b.read_text())
        diffs = compare(a, b)
        for k in ("bytes_per_text_byte", "documents_bytes_per_text_byte"):
            print(f"{k}: {a[k]} -> {b[k]}")
        print("\n".join(diffs) if diffs else f"identical: {len(a['tokens']):,} documents, their tokens and every "
              "count of kept and rejected")
        return 1 if diffs else 0
    curate = Path(sys.executable).parent / "curate"
    inputs = [] if str(args.corpora) == "sample" else [
        str(p) for p in sorted(args.corpora.iterdir()) if p.name.endswith(".jsonl.gz") or p.name == "web"]
    t0 = time.perf_counter()
    subprocess.run([str(curate), "run", *inputs, "--out", str(args.out)], check=True, stdout=subprocess.DEVNULL)
    print(f"curate run: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(json.dumps(digest(args.out), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

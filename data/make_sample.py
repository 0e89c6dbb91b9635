#!/usr/bin/env python3
"""Rebuild data/sample from ../shared/corpora: a deterministic, every-other-record subset of each file, and
web.warc.gz, a few dozen records of the real crawls in ../shared/corpora/web.

Usage: python3 data/make_sample.py [--corpora ../shared/corpora] [--chars 600000]
Records are grouped by source family (the first two parts of the id, and the language), then taken
round-robin across the families, every other record in file order (so near-duplicate neighbours stay
apart), until about --chars characters of text per corpus. Every family and language appears.
Records are copied unchanged, licence fields included.
"""
import argparse
import gzip
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default=str(HERE.parent.parent / "shared" / "corpora"))
    ap.add_argument("--chars", type=int, default=700_000)
    args = ap.parse_args()
    out_dir = HERE / "sample"
    out_dir.mkdir(exist_ok=True)
    web_sample(Path(args.corpora) / "web", out_dir / "web.warc.gz")
    for src in sorted(Path(args.corpora).glob("*.jsonl.gz")):
        families: dict[str, list[tuple[str, int]]] = {}
        with gzip.open(src, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                rec = json.loads(line)
                key = "/".join(rec["id"].split("#")[0].split("/")[:2]) + ":" + rec.get("lang", "")
                fam = families.setdefault(key, [])
                if len(fam) < 4000 and i % 2 == 0:
                    fam.append((line if line.endswith("\n") else line + "\n", len(rec["text"])))
        total, kept, rnd = 0, [], 0
        while total < args.chars and any(rnd < len(v) for v in families.values()):
            for key in sorted(families):
                if rnd < len(families[key]) and total < args.chars:
                    line, n = families[key][rnd]
                    kept.append(line)
                    total += n
            rnd += 1
        # mtime=0: the same records give byte-identical files
        with open(out_dir / src.name, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write("".join(kept).encode("utf-8"))
        print(f"{src.name}: {len(kept)} records, {total:,} chars")


def web_sample(web_dir: Path, out: Path, picks=(("crawl-00000.warc.gz", 0, 70), ("crawl-00003.warc.gz", 200, 240),
                                                 ("iana.warc.gz", 100, 150))) -> None:
    """Records [start, stop) of each crawl file, copied byte for byte: a .warc.gz is one gzip member per record,
    so the members between two records' offsets are those records, unchanged (200s, 301s, 404s, images, CSS,
    pages in windows-1252, and the iana crawl's revisits and 302s)."""
    from fastwarc.warc import ArchiveIterator

    with open(out, "wb") as dst:
        for name, start, stop in picks:
            path = web_dir / name
            with open(path, "rb") as f:
                offsets = [rec.stream_pos for rec in ArchiveIterator(f, parse_http=False)]
            offsets.append(path.stat().st_size)
            with open(path, "rb") as f:
                f.seek(offsets[start])
                dst.write(f.read(offsets[min(stop, len(offsets) - 1)] - offsets[start]))


if __name__ == "__main__":
    main()

"""Reading the web: extraction quality on real pages with reference text, and WARC ingest throughput against
datatrove's WarcReader + Trafilatura extractor on ../shared/corpora/web, one core each, in the same run.

    python tests/benchmarks/bench_web.py [--repeats 3] [--pages 400]

Quality: the html-text and inscriptis sdists ship HTML pages with the text expected from them (downloaded once into
bench-out/sdists with `pip download --no-binary`). Per page, precision and recall of the reference's words (lower-cased
`\\w+`, as multisets) for Resiliparse (curate's extractor) and trafilatura. trafilatura's own test and evaluation
pages are not used: the project keeps them for an independent evaluation.

Throughput: WARC response records of ../shared/corpora/web read, decoded and extracted into documents; pages/s of
curate's ingest of the WARC files (curate.tasks.ingest.ingest.ingest_file: language ID and Parquet included) against datatrove's
WarcReader piped into its Trafilatura extractor (its own text from the same records).
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.tasks.ingest.extract import extract  # noqa: E402

WEB = REPO.parent / "shared" / "corpora" / "web"
SDISTS = REPO / "bench-out" / "sdists"
WORD = re.compile(r"\w+")


def reference_pages() -> dict[str, list[tuple[str, str]]]:
    """(html, expected text) pairs per source sdist."""
    SDISTS.mkdir(parents=True, exist_ok=True)
    if not list(SDISTS.glob("html_text-*.tar.gz")) or not list(SDISTS.glob("inscriptis-*.tar.gz")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d",
                        str(SDISTS), "html-text", "inscriptis"], check=True)
    out: dict[str, list[tuple[str, str]]] = {}
    for sdist, folder in (("html_text-*.tar.gz", "tests/test_webpages/"), ("inscriptis-*.tar.gz", "tests/html/")):
        path = sorted(SDISTS.glob(sdist))[-1]
        with tarfile.open(path) as tar:
            names = {m.name: m for m in tar.getmembers() if folder in m.name}
            for name in sorted(names):
                if name.endswith(".html") and name[:-5] + ".txt" in names:
                    html = tar.extractfile(names[name]).read().decode("utf-8", "replace")
                    txt = tar.extractfile(names[name[:-5] + ".txt"]).read().decode("utf-8", "replace")
                    out.setdefault(path.name.split("-")[0], []).append((html, txt))
    return out


def words(text: str) -> Counter:
    return Counter(w.lower() for w in WORD.findall(text))


def quality() -> None:
    print("extraction quality, reference words per page (mean precision / recall / F1):")
    for source, pages in reference_pages().items():
        row = []
        for extractor in ("resiliparse", "trafilatura"):
            p, r = [], []
            for html, ref in pages:
                got, want = words(extract(html, extractor)[0]), words(ref)
                hit = sum((got & want).values())
                p.append(hit / max(1, sum(got.values())))
                r.append(hit / max(1, sum(want.values())))
            mp, mr = statistics.mean(p), statistics.mean(r)
            row.append(f"{extractor} {mp:.2f} / {mr:.2f} / {2 * mp * mr / max(1e-9, mp + mr):.2f}")
        print(f"  {source} ({len(pages)} pages): " + "; ".join(row))


def ours(files: list[Path], work: Path) -> int:
    from curate.schemas.config import IngestConfig
    from curate.schemas.inputs import InputFile
    from curate.tasks.ingest.ingest import ingest_file

    return sum(ingest_file(InputFile("web", str(f), f.name), IngestConfig(), work).kept for f in files)


def run_datatrove(files: list[Path]) -> int:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    reader = WarcReader(str(files[0].parent), glob_pattern="crawl-0000[0-7].warc.gz")
    extractor = Trafilatura(favour_precision=True, timeout=10)
    return sum(1 for doc in extractor.run(reader.run()) if doc.text)


MEMORY_CHILD = """
import sys; sys.path.insert(0, {repo!r})
from curate.schemas.config import IngestConfig
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
r = ingest_file(InputFile("web", {src!r}, "big.warc.gz"), IngestConfig(), {work!r})
print(r.docs_in, r.kept)
"""


def memory(scales: list[int]) -> None:
    """Peak RSS of ingesting one WARC made of the shared crawls repeated k times (gzip members concatenate)."""
    from tests.benchmarks.rss import run_measured

    files = sorted(WEB.glob("crawl-0000[0-7].warc.gz"))
    peaks = []
    for k in scales:
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.warc.gz"
            with open(big, "wb") as out:
                for _ in range(k):
                    for f in files:
                        out.write(f.read_bytes())
            out_text, wall, peak, _ = run_measured([sys.executable, "-c", MEMORY_CHILD.format(
                repo=str(REPO), src=str(big), work=str(Path(tmp) / "w"))])
            peaks.append(peak)
            print(f"  one WARC of {big.stat().st_size / 1e6:,.0f} MB ({out_text.split()[0]} records): "
                  f"peak RSS {peak:,.0f} MB, {wall:.0f} s")
    print(f"peak RSS, largest WARC / smallest: {peaks[-1] / peaks[0]:.2f} (streamed: flat in the number of records)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--memory", default="", help="scales for the memory check, e.g. 1,10 (off by default)")
    args = ap.parse_args()
    if args.memory:
        memory([int(k) for k in args.memory.split(",")])
    if not args.no_quality:
        quality()
    files = sorted(WEB.glob("crawl-0000[0-7].warc.gz"))
    try:
        import datatrove  # noqa: F401
    except ImportError:
        print("datatrove is not installed (the bench extra): throughput of curate alone")
        datatrove_ok = False
    else:
        datatrove_ok = True
    from fastwarc.warc import ArchiveIterator

    records = sum(str(r.record_type).endswith("response") for f in files
                  for r in ArchiveIterator(open(f, "rb"), parse_http=False))
    ratios, rates = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            kept = ours(files, Path(tmp))
            a = time.perf_counter() - t0
        rates.append(kept / a)
        if datatrove_ok:
            t0 = time.perf_counter()
            theirs = run_datatrove(files)
            b = time.perf_counter() - t0
            ratios.append(b / a)  # the same records in: the ratio of times is the ratio of records per second
            print(f"  {records:,} response records: curate {a:.1f} s ({kept} documents, {records / a:.0f} records/s); "
                  f"datatrove {b:.1f} s ({theirs} documents, {records / b:.0f} records/s)")
    if rates:
        print(f"curate WARC ingest: {statistics.median(rates):.0f} documents/s (median of {args.repeats})")
    if ratios:
        print(f"curate / datatrove, records per second over the same records: {statistics.median(ratios):.1f}x, "
              "median of per-repeat ratios (target >= 3)")


if __name__ == "__main__":
    main()

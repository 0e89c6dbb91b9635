"""Reading the web: main-content extraction quality and speed on real pages with reference text, and WARC ingest
throughput against datatrove's WarcReader + Trafilatura extractor on ../shared/corpora/web, one core each, in the
same run.

    python tests/benchmarks/bench_web.py [--repeats 3] [--no-quality] [--docs-pages 200] [--per-manual 30]

Quality, per extractor (curate's `hybrid`, the default; `resiliparse` alone; `trafilatura`), on three sets:
- ../shared/bench/article-extraction: 181 news and blog pages with a human-annotated article body (Zyte's benchmark);
- the Python 3.11 documentation (Debian's python3.11-doc, fetched once with `apt-get download` into bench-out/): 200
  pages drawn with a fixed seed, each scored against its own reST source (`_sources/*.rst.txt`, shipped beside the
  HTML) with directives, labels and roles reduced to their text; reST markup the HTML renders differently (a
  reference's resolved title, a generated signature) caps every extractor below 1.0 alike;
- held-out manuals: up to 30 pages each of seven other projects' Sphinx manuals (HELD_OUT, Debian packages, other
  themes, translations included), scored the same way. The extraction's trims were written by reading the first two
  sets' errors; these pages were not read.
The metric is the article benchmark's: per page, multisets of 4-word shingles (`\\w+` words); precision is the mean
over pages that produced text, recall the mean over all pages, F1 from the two means; pages/s is one core's
(process time over the set). trafilatura's own test and evaluation pages are not used: they are kept for an
independent evaluation.

Throughput: WARC response records of ../shared/corpora/web read, decoded and extracted into documents; pages/s of
curate's ingest of the WARC files (curate.tasks.ingest.ingest.ingest_file: language ID and Parquet included) against
datatrove's WarcReader piped into its Trafilatura extractor (its own text from the same records).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.tasks.ingest.extract import EXTRACTORS, extract  # noqa: E402
from curate.tasks.ingest.web import decode_html  # noqa: E402

WEB = REPO.parent / "shared" / "corpora" / "web"
ARTICLES = REPO.parent / "shared" / "bench" / "article-extraction"
BENCH_OUT = REPO / "bench-out"
# Sphinx manuals never read while the extraction's trims were written: a check of them on pages of the same kind as
# the Python docs, by other projects and themes (alabaster, Pallets', Sphinx's own, Celery's; Beautiful Soup's in
# Portuguese, Russian and Chinese too).
HELD_OUT = ["python-bs4-doc", "python-celery-doc", "python-click-doc", "python-flask-doc", "python-jinja2-doc",
            "python-requests-doc", "sphinx-doc"]
WORD = re.compile(r"\w+")
_ROLE = re.compile(r":[\w:+-]+:`!?~?([^`<]*?)\s*(?:<[^>]*>)?`")  # :func:`~os.path.join` -> os.path.join
_AUTODOC = re.compile(r"^\.\. auto\w+::", re.M)
_HIDDEN = re.compile(r"\.\. (index|_[^:]*|\|[^|]*\||highlight|sectionauthor|moduleauthor|module|currentmodule|"
                     r"toctree|testsetup|testcleanup|include|impl-detail|only|audit-event|opcode)\b"
                     r"|\.\.\s*$|\.\. [^:]*$")  # index entries, labels, substitutions, comments, declarations


def article_pages() -> list[tuple[str, str]]:
    """(html, article body) of the 181 annotated pages."""
    truth = json.loads((ARTICLES / "ground-truth.json").read_text())
    return [(decode_html(gzip.open(ARTICLES / "html" / f"{key}.html.gz").read(), None)[0], truth[key]["articleBody"])
            for key in sorted(truth)]


def rst_text(source: str) -> str:
    """What of a reST source a reader sees: directives that render nothing (index entries, labels, comments, module
    and toctree declarations) left out with their indented bodies, roles reduced to their text."""
    lines, hiding = [], False
    for line in source.splitlines():
        if hiding and (not line.strip() or line[:1] in " \t"):
            continue
        hiding = bool(_HIDDEN.match(line))
        if not hiding:
            lines.append(line)
    return _ROLE.sub(lambda m: m.group(1), "\n".join(lines))


def debian_package(name: str) -> Path:
    """The unpacked files of a Debian package, fetched once with `apt-get download` into bench-out/."""
    where = BENCH_OUT / name
    if not (where / "usr").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", name], cwd=where, check=True, capture_output=True)
        subprocess.run(["dpkg-deb", "-x", *glob.glob(str(where / "*.deb")), str(where)], check=True)
    return where


def sphinx_pages(root: Path, n: int) -> list[tuple[str, str]]:
    """(html, rendered source) of up to n pages of a Sphinx manual's HTML, drawn with a fixed seed: pages whose source
    has at least 50 words and no autodoc directive (what those render is not in the source)."""
    sources = sorted(glob.glob(str(root / "_sources/**/*.rst.txt"), recursive=True))
    random.Random(0).shuffle(sources)
    out = []
    for source in sources:
        page = root / (os.path.relpath(source, root / "_sources")[:-len(".rst.txt")] + ".html")
        text = Path(source).read_text(encoding="utf-8")
        if not page.exists() or _AUTODOC.search(text):
            continue
        ref = rst_text(text)
        if len(WORD.findall(ref)) >= 50:
            out.append((page.read_text(encoding="utf-8"), ref))
        if len(out) == n:
            break
    return out


def python_doc_pages(n: int) -> list[tuple[str, str]]:
    """(html, rendered source) of n pages of the Python 3.11 documentation."""
    return sphinx_pages(debian_package("python3.11-doc") / "usr/share/doc/python3.11/html", n)


def held_out_manual_pages(per_manual: int) -> list[tuple[str, str]]:
    """Up to per_manual pages of each of HELD_OUT's manuals (each HTML tree once: packages link the same tree under
    two names), translations included."""
    roots = {}
    for package in HELD_OUT:
        for root in sorted((debian_package(package) / "usr/share/doc").glob("*/html*")):
            if (root / "_sources").is_dir():
                roots.setdefault(root.resolve(), root)
    return [page for root in roots.values() for page in sphinx_pages(root, per_manual)]


def shingles(text: str) -> Counter:
    w = WORD.findall(text)
    return Counter(tuple(w[i:i + 4]) for i in range(len(w) - 3))


def scored(pages: list[tuple[str, str]], extractor: str) -> tuple[float, float, float, float]:
    """(precision, recall, F1, pages/s on one core) of an extractor over (html, reference) pages."""
    texts, spent = [], 0.0
    for html, _ in pages:
        t0 = time.process_time()
        texts.append(extract(html, extractor)[0])
        spent += time.process_time() - t0
    precision, recall = [], []
    for text, (_, ref) in zip(texts, pages):
        got, want = shingles(text), shingles(ref)
        hit = sum((got & want).values())
        if got:
            precision.append(hit / sum(got.values()))
        recall.append(hit / max(1, sum(want.values())))
    p, r = statistics.mean(precision), statistics.mean(recall)
    return p, r, 2 * p * r / max(1e-9, p + r), len(pages) / spent


def quality(docs_pages: int, per_manual: int) -> None:
    print("main-content extraction, 4-word shingles against the reference (precision / recall / F1, pages/s on one "
          "core):")
    sets = (("article-extraction", article_pages()), ("python-docs", python_doc_pages(docs_pages)),
            ("held-out manuals", held_out_manual_pages(per_manual)))
    for name, pages in sets:
        for extractor in EXTRACTORS:
            extract(pages[0][0], extractor)  # imports, outside the timing
        results = {extractor: scored(pages, extractor) for extractor in EXTRACTORS}
        for extractor, (p, r, f1, rate) in results.items():
            print(f"  {name} ({len(pages)} pages) {extractor:12} {p:.3f} / {r:.3f} / {f1:.3f}   {rate:6.1f} pages/s")
        print(f"  {name}: hybrid's pages/s / trafilatura's: {results['hybrid'][3] / results['trafilatura'][3]:.1f}x "
              "(target >= 10)")


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
    ap.add_argument("--docs-pages", type=int, default=200, help="pages of the Python documentation to score")
    ap.add_argument("--per-manual", type=int, default=30, help="pages of each held-out manual to score")
    ap.add_argument("--memory", default="", help="scales for the memory check, e.g. 1,10 (off by default)")
    args = ap.parse_args()
    if args.memory:
        memory([int(k) for k in args.memory.split(",")])
    if not args.no_quality:
        quality(args.docs_pages, args.per_manual)
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

"""The cost of the per-page time limit: main-content extraction of the shared crawl's HTML pages in this process
(the floor) against the same pages through the sandboxed child (tasks/ingest/extract.py, its start included),
interleaved, median of the repeats.

Run: .venv/bin/python -m tests.benchmarks.bench_extract_sandbox [--files 2] [--repeats 5]
"""
from __future__ import annotations

import argparse

from fastwarc.warc import ArchiveIterator, WarcRecordType

from curate.tasks.ingest.extract import SandboxedExtractor
from curate.tasks.ingest.extract import extract
from curate.tasks.ingest.web import decode_html
from tests.benchmarks.timing import interleaved_medians
from tests.conftest import SHARED_CORPORA


def pages(files: int) -> list[str]:
    found = []
    for path in sorted((SHARED_CORPORA / "web").glob("*.warc.gz"))[:files]:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                if "html" in (rec.http_content_type or "") and rec.http_headers.status_code == 200:
                    if decoded := decode_html(rec.reader.read(), rec.http_charset):
                        found.append(decoded[0])
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    html = pages(args.files)
    print(f"{len(html)} pages, {sum(map(len, html)) / 1e6:.1f} M characters")

    def sandboxed() -> None:
        with SandboxedExtractor("resiliparse", 10) as extractor:
            for page in html:
                extractor(page)

    (d, s), _ = interleaved_medians(args.repeats, lambda: [extract(page) for page in html], sandboxed)
    print(f"in process (floor): {d:.2f} s   sandboxed: {s:.2f} s   ratio {s / d:.2f}   "
          f"({(s - d) / len(html) * 1000:.2f} ms a page more)")


if __name__ == "__main__":
    main()

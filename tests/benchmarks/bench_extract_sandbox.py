"""Main-content extraction in the process vs in the sandboxed child (tasks/ingest/sandbox.py) on the shared crawl:
the cost of the per-page time limit. Run: .venv/bin/python tests/benchmarks/bench_extract_sandbox.py"""
import time, statistics
from fastwarc.warc import ArchiveIterator, WarcRecordType
from curate.tasks.ingest.web import extract, decode_html
from curate.tasks.ingest.sandbox import SandboxedExtractor
pages=[]
for name in ["crawl-00000.warc.gz","crawl-00001.warc.gz"]:
    for r in ArchiveIterator(open(f"/work/shared/corpora/web/{name}","rb"), record_types=WarcRecordType.response, parse_http=True):
        ct=(r.http_content_type or "")
        if "html" in ct and r.http_headers.status_code==200:
            d=decode_html(r.reader.read(), r.http_charset)
            if d: pages.append(d[0])
print(len(pages), "pages", sum(len(p) for p in pages)/1e6, "M chars")
direct=[];sand=[]
for rep in range(3):
    t=time.perf_counter(); [extract(p) for p in pages]; direct.append(time.perf_counter()-t)
    t=time.perf_counter()
    with SandboxedExtractor("resiliparse", 10) as ex:
        [ex(p) for p in pages]
    sand.append(time.perf_counter()-t)
print("direct", [round(x,2) for x in direct], "sandbox (incl. start)", [round(x,2) for x in sand], "ratio of medians", round(statistics.median(sand)/statistics.median(direct),3))

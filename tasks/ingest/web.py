"""Crawled web in WARC files (.warc, .warc.gz): what a document is, how its bytes become text, and what else a crawl
holds.

A document is a WARC `response` record whose HTTP status is 200 and whose payload is HTML (text/html or
application/xhtml+xml). Every response and revisit record is a record in: kept, or rejected with a reason and
detail: `http_status` (not 200: redirects, 404s), `not_html` (images, CSS, JS, PDFs), `revisit` (no payload of its
own), `url_blocked` (config), `too_large`, `undecodable`, `no_main_content` (nothing left after extraction), and
`truncated_file` for a record the file ends inside. Other record types (request, warcinfo, metadata, resource) are
counted by type in the report, not as documents.

Decoding follows what a browser does: the HTTP header's charset, else a byte-order mark, else the `<meta>` charset,
else detection (charset_normalizer); ISO-8859-1 and US-ASCII decode as windows-1252, as the HTML standard says.
Main content comes from Resiliparse (chosen over trafilatura: see tests/benchmarks/bench_web.py for both on the same
pages), keeping paragraphs, lists and code blocks and dropping navigation, headers and footers.
"""
from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from curate.schemas.documents import RejectReason as R
from curate.tasks.ingest.readers import RawRecord

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# WHATWG: these labels mean windows-1252 (its 0x80-0x9F are quotes and dashes, not C1 controls)
_AS_1252 = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii", "cp819", "ibm819",
            "iso_8859-1", "windows-1252", "cp1252", "x-cp1252"}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _AS_1252:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str] | None:
    """(text, the charset used) of an HTML payload, or None when nothing decodes it."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            candidates = [name]
            break
    else:
        meta = _META_CHARSET.search(body[:4096])
        candidates = [c for c in (_codec(header_charset), _codec(meta.group(1).decode("ascii", "ignore")) if meta
                                  else None) if c]
    for name in candidates:
        try:
            return body.decode(name), name
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body[:65536]).best()
    if best is None:
        return None
    name = _codec(best.encoding) or best.encoding
    try:
        return body.decode(name), name
    except (UnicodeDecodeError, LookupError):
        return None


# Page chrome Resiliparse's main-content heuristic can leave in: navigation bars (PostgreSQL's "Prev Up Home Next"
# tables), site headers and footers, sidebars, breadcrumbs, tables of contents and menus.
CHROME = ["nav", "header", "footer", "aside", '[role="navigation"]', '[role="banner"]', '[role="contentinfo"]',
          ".navheader", ".navfooter", '[class*="breadcrumb"]', '[class*="sidebar"]', '[id*="sidebar"]',
          '[class*="toc"]', '[id*="toc"]', '[class*="menu"]', '[id*="menu"]']


def extract(html: str, extractor: str = "resiliparse") -> tuple[str, str | None]:
    """(main text, title) of a page."""
    if extractor == "trafilatura":
        import trafilatura

        text = trafilatura.extract(html, include_comments=False, include_tables=True, include_formatting=False,
                                   deduplicate=False) or ""
        meta = trafilatura.extract_metadata(html)
        return text, (meta.title if meta else None)
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    title = tree.title or None  # before extraction, which may remove nodes
    text = extract_plain_text(tree, preserve_formatting=True, main_content=True, list_bullets=True, alt_texts=False,
                              links=False, form_fields=False, noscript=False, comments=False, skip_elements=CHROME)
    return text, title


@dataclass
class WebFilter:
    """URL filtering from config: blocked hosts/domains (a host or any of its parent domains) and substrings."""

    domains: frozenset[str] = frozenset()
    substrings: tuple[str, ...] = ()

    @classmethod
    def load(cls, blocklist_files: list[str], substrings: list[str]) -> "WebFilter":
        domains = set()
        for f in blocklist_files:
            for line in Path(f).read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip().lower()
                if line:
                    domains.add(line)
        return cls(frozenset(domains), tuple(s for s in substrings if s))

    def why_blocked(self, url: str) -> str | None:
        host = (urlsplit(url).hostname or "").lower()
        parts = host.split(".")
        for k in range(len(parts)):
            if ".".join(parts[k:]) in self.domains:
                return f"host {host} is on the blocklist ({'.'.join(parts[k:])})"
        for s in self.substrings:
            if s in url:
                return f"the URL contains {s!r}"
        return None


@dataclass
class WarcTally:
    """What a WARC file held besides documents: record counts by type."""

    types: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.types[kind] = self.types.get(kind, 0) + 1


def _tail_complete(path: Path, start: int) -> bool:
    """Whether the file's bytes from `start` (its last record's offset) are whole records: complete gzip members
    to the end for .warc.gz, the record separator at the end for .warc."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    if not path.name.lower().endswith(".gz"):
        return data.endswith(b"\r\n\r\n")
    while data.strip(b"\x00"):
        d = zlib.decompressobj(31)
        try:
            d.decompress(data)
        except zlib.error:
            return False
        if not d.eof:
            return False
        data = d.unused_data
    return True


def read_warc(path: Path, max_bytes: int, text_field: str, id_field: str, extractor: str, url_filter: WebFilter,
              tally: WarcTally) -> Iterator:
    """One RawRecord per response or revisit record (documents, or rejects with their reason); the last one held
    back until the file is known to end after it, so that a record the file is cut inside is `truncated_file`."""
    from fastwarc.warc import ArchiveIterator


    n, held, last_doc, last_any = 0, None, -1, 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, parse_http=True):
            last_any = rec.stream_pos
            kind = str(rec.record_type).split(".")[-1]
            if kind not in ("response", "revisit"):
                tally.add(kind)
                continue
            if held is not None:
                yield held
            n += 1
            last_doc = rec.stream_pos
            held = _document(n, rec, kind, max_bytes, text_field, id_field, extractor, url_filter)
    if _tail_complete(path, last_any):
        if held is not None:
            yield held
        return
    # The file ends inside its last record, or after it inside one that never parsed: one truncated_file reject
    # stands for that record, and a document the cut runs through is not kept.
    if held is not None and last_doc == last_any:
        yield RawRecord(n, reason=R.TRUNCATED, detail=f"the file ends inside this record: {n - 1} records read before it")
    else:
        if held is not None:
            yield held
        yield RawRecord(n + 1, reason=R.TRUNCATED, detail=f"the file ends inside a record: {n} records read before it")


def _refusal(rec, kind: str, url: str, max_bytes: int, url_filter: WebFilter) -> tuple[str, str] | None:
    """(reason, detail) when a response or revisit record is not a document, from its headers alone."""
    if kind == "revisit":
        return R.REVISIT, f"revisit of {url} (no payload of its own)"
    if blocked := url_filter.why_blocked(url):
        return R.URL_BLOCKED, blocked
    status = rec.http_headers.status_code if rec.is_http else None
    if status != 200:
        where = rec.http_headers.get("Location") if rec.is_http else None
        return R.HTTP_STATUS, f"HTTP {status}" + (f" -> {where}" if where else "")
    ctype = (rec.http_content_type or "").lower()
    if not ctype.startswith(HTML_TYPES):
        return R.NOT_HTML, f"content type {ctype or 'none'}"
    if rec.content_length > max_bytes:
        return R.TOO_LARGE, f"{rec.content_length} bytes > max_doc_bytes {max_bytes}"
    return None


def _document(n: int, rec, kind: str, max_bytes: int, text_field: str, id_field: str, extractor: str,
              url_filter: WebFilter):

    url = rec.headers.get("WARC-Target-URI") or ""
    if refused := _refusal(rec, kind, url, max_bytes, url_filter):
        return RawRecord(n, reason=refused[0], detail=refused[1], raw=url)
    decoded = decode_html(rec.reader.read(), rec.http_charset)
    if decoded is None:
        return RawRecord(n, reason=R.UNDECODABLE, detail="no charset decodes the payload", raw=url)
    html, charset = decoded
    text, title = extract(html, extractor)
    if not text.strip():
        return RawRecord(n, reason=R.NO_MAIN_CONTENT, detail=f"nothing left after extraction ({extractor})", raw=url)
    record_id = rec.record_id or f"{url}@{rec.headers.get('WARC-Date')}"
    return RawRecord(n, record={id_field: record_id, text_field: text, "url": url,
                                "host": (urlsplit(url).hostname or "").lower(),
                                "crawl_date": rec.headers.get("WARC-Date"), "warc_record_id": rec.record_id,
                                "title": title, "charset": charset})

"""Crawled web in WARC files (.warc, .warc.gz): what a document is, how its bytes become text, and what else a crawl
holds.

A document is a WARC `response` record whose HTTP status is 200 and whose payload is HTML (text/html or
application/xhtml+xml). Every response and revisit record is a record in: kept, or rejected with a reason and
detail: `http_status` (not 200: redirects, 404s), `not_html` (images, CSS, JS, PDFs), `revisit` (no payload of its
own), `url_blocked` (config), `too_large`, `undecodable`, `no_main_content` (nothing left after extraction),
`timeout` (extraction ran past `ingest.web.extract_timeout_s`: it runs in a child process, tasks/ingest/extract.py),
`malformed_record`, and `truncated_file` for a record the file ends inside. Other record types (request, warcinfo,
metadata, resource) are counted by type in the report, not as documents.

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

from curate.schemas.config import WebConfig
from curate.schemas.documents import RejectReason as R
from curate.tasks.ingest.readers import RawRecord
from curate.tasks.ingest.extract import ExtractionCrashed, ExtractionTimeout, SandboxedExtractor

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
        info = codecs.lookup(label)
    except LookupError:
        return None
    return info.name if getattr(info, "_is_text_encoding", True) and info.name != "undefined" else None


def _plausible(body: bytes, codec: str) -> bool:
    """A declared charset the bytes can be in: UTF-16/32 without a BOM must have the NUL bytes ASCII takes in them
    (UTF-8 bytes "decoded" as UTF-16 give text of no language at all)."""
    if not codec.startswith(("utf-16", "utf_16", "utf-32", "utf_32")):
        return True
    head = body[:512]
    return head.count(0) >= len(head) // 8


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str] | None:
    """(text, the charset used) of an HTML payload, or None when nothing decodes it."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            candidates = [name]
            break
    else:
        meta = _META_CHARSET.search(body[:4096])
        candidates = [c for c in (_codec(header_charset), _codec(meta.group(1).decode("ascii", "ignore")) if meta
                                  else None) if c and _plausible(body, c)]
    for name in candidates:
        try:
            return body.decode(name), name
        except (UnicodeError, LookupError):
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
    to the end for .warc.gz, the record separator at the end for .warc. Decompressed a block at a time: a member that
    expands to gigabytes is read through, never held."""
    with path.open("rb") as f:
        f.seek(start)
        if not path.name.lower().endswith(".gz"):
            f.seek(max(start, path.stat().st_size - 4))
            return f.read() .endswith(b"\r\n\r\n")
        pending = b""
        while True:
            pending = pending or f.read(CHUNK_IN)
            if not pending.startswith(b"\x1f\x8b"):  # no member starts here: padding (NULs, a stray tail), not a record
                return True
            ok, pending = _through_member(f, pending)
            if not ok:
                return False


CHUNK_IN = 1 << 16


def _through_member(f, data: bytes) -> tuple[bool, bytes]:
    """Decompress one gzip member starting at `data` (reading on from f), output discarded a block at a time;
    (whether it ended, the bytes after it)."""
    d = zlib.decompressobj(31)
    while True:
        try:
            d.decompress(data, CHUNK_IN)
            while d.unconsumed_tail:
                d.decompress(d.unconsumed_tail, CHUNK_IN)
        except zlib.error:
            return False, b""
        if d.eof:
            return True, d.unused_data
        data = f.read(CHUNK_IN)
        if not data:
            return False, b""


def read_warc(path: Path, max_bytes: int, text_field: str, id_field: str, web: WebConfig, url_filter: WebFilter,
              tally: WarcTally) -> Iterator:
    """One RawRecord per response or revisit record (documents, or rejects with their reason); the last one held
    back until the file is known to end after it, so that a record the file is cut inside is `truncated_file`. A
    record that cannot be parsed is a `malformed_record` reject and reading goes on at the next record."""
    n, held, last_doc, last_any = 0, None, -1, 0
    with path.open("rb") as f, SandboxedExtractor(web.extractor, web.extract_timeout_s) as extractor:
        for rec in _records(f, path):
            if isinstance(rec, _Malformed):
                if rec.held_too and held is not None:  # the record before it did not end where it said
                    held = RawRecord(held.line, reason=R.MALFORMED_RECORD, detail=rec.detail, raw=held.raw)
                    continue
                if held is not None:
                    yield held
                n += 1
                held, last_doc, last_any = RawRecord(n, reason=R.MALFORMED_RECORD, detail=rec.detail), -2, rec.pos
                continue
            last_any = rec.stream_pos
            kind = str(rec.record_type).split(".")[-1]
            if kind not in ("response", "revisit") and kind in KNOWN_TYPES:
                tally.add(kind)
                continue
            if held is not None:
                yield held
            n += 1
            last_doc = rec.stream_pos
            held = _guarded(n, rec, kind, max_bytes, text_field, id_field, extractor, url_filter)
    yield from _ending(path, held, n, last_doc, last_any)


def _ending(path: Path, held, n: int, last_doc: int, last_any: int) -> Iterator:
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


KNOWN_TYPES = ("warcinfo", "response", "resource", "request", "metadata", "revisit", "conversion", "continuation")


@dataclass
class _Malformed:
    pos: int  # where the record that could not be parsed starts (or the one after the last good one)
    detail: str
    held_too: bool = False  # the last record read overran into it: that one is the malformed record


def _records(f, path: Path) -> Iterator:
    """fastwarc's records of a WARC file; where one cannot be parsed, a _Malformed, and reading starts again at the
    next record (the next gzip member of a .warc.gz, the next `WARC/` line of a .warc). Whose fault a failure was is
    known at the restart: when reading goes on fine there, the last record read overran its own end (a wrong length);
    when it fails at once, the record there is the malformed one. A file that ends inside the record that failed is
    left to the truncation check (read_warc's ending)."""
    from fastwarc.warc import ArchiveIterator

    gz, size, start, suspect, detail = path.name.lower().endswith(".gz"), path.stat().st_size, 0, False, ""
    while True:
        f.seek(start)
        last, yielded = start, 0
        try:
            for rec in ArchiveIterator(f, parse_http=True):
                if rec.content_length > (1100 if gz else 1) * (size - rec.stream_pos):  # deflate's ratio is 1032 at most
                    raise ValueError(f"its Content-Length {rec.content_length} runs past the end of the file")
                if suspect and not yielded:  # fine from the restart on: the last record before it overran
                    yield _Malformed(start, detail, held_too=True)
                last, yielded = rec.stream_pos, yielded + 1
                yield rec
            return
        except Exception as err:  # noqa: BLE001 - fastwarc raises OSError, ValueError, UnicodeError...
            if suspect and not yielded:  # it failed at once at the restart: the record there is the malformed one
                yield _Malformed(start, detail)
            detail = f"not a WARC record ({' '.join(str(err).split())[:200]}): read on at the next record"
        if not (start or yielded):  # the file's first record
            yield _Malformed(0, detail)
        nxt = _next_record(f, last + 1, gz)
        if nxt is None:
            return
        start, suspect = nxt, bool(yielded)


def _next_record(f, pos: int, gz: bool) -> int | None:
    """The offset of the next record start at or after `pos`: a gzip member header (its reserved flag bits clear),
    or a `WARC/` line."""
    marker = b"\x1f\x8b\x08" if gz else b"\nWARC/"
    f.seek(pos)
    data, base = b"", pos
    while chunk := f.read(1 << 20):
        data += chunk
        k = data.find(marker)
        while k >= 0 and gz and k + 3 < len(data) and data[k + 3] & 0xE0:  # not a gzip header after all
            k = data.find(marker, k + 1)
        if k >= 0 and (not gz or k + 3 < len(data)):
            return base + k + (0 if gz else 1)
        keep = max(0, len(data) - len(marker) - 1)
        data, base = data[keep:], base + keep
    return None


def _guarded(n: int, rec, kind: str, max_bytes: int, text_field: str, id_field: str, extractor: SandboxedExtractor,
             url_filter: WebFilter) -> RawRecord:
    """`_document`, or a malformed_record reject when something of the record (a URI, a charset, its payload)
    breaks it, or a timeout reject when its extraction runs too long: one bad record is one reject."""
    if kind not in KNOWN_TYPES:
        return RawRecord(n, reason=R.MALFORMED_RECORD, detail=f"unknown record type {kind!r} (are its header lines "
                         "CRLF-terminated?)")
    try:
        return _document(n, rec, kind, max_bytes, text_field, id_field, extractor, url_filter)
    except ExtractionTimeout:
        return RawRecord(n, reason=R.TIMEOUT, detail=f"main-content extraction ({extractor.kind}) ran past "
                         f"{extractor.timeout_s:g} s", raw=str(rec.headers.get("WARC-Target-URI") or ""))
    except (ValueError, LookupError, UnicodeError, OSError, ExtractionCrashed) as err:
        return RawRecord(n, reason=R.MALFORMED_RECORD, detail=f"{type(err).__name__}: {err}"[:300],
                         raw=str(rec.headers.get("WARC-Target-URI") or ""))


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


def _document(n: int, rec, kind: str, max_bytes: int, text_field: str, id_field: str, extractor: SandboxedExtractor,
              url_filter: WebFilter):

    url = rec.headers.get("WARC-Target-URI") or ""
    if refused := _refusal(rec, kind, url, max_bytes, url_filter):
        return RawRecord(n, reason=refused[0], detail=refused[1], raw=url)
    decoded = decode_html(rec.reader.read(), rec.http_charset)
    if decoded is None:
        return RawRecord(n, reason=R.UNDECODABLE, detail="no charset decodes the payload", raw=url)
    html, charset = decoded
    text, title = extractor(html)
    if not text.strip():
        return RawRecord(n, reason=R.NO_MAIN_CONTENT, detail=f"nothing left after extraction ({extractor.kind})",
                         raw=url)
    record_id = rec.record_id or f"{url}@{rec.headers.get('WARC-Date')}"
    return RawRecord(n, record={id_field: record_id, text_field: text, "url": url,
                                "host": (urlsplit(url).hostname or "").lower(),
                                "crawl_date": rec.headers.get("WARC-Date"), "warc_record_id": rec.record_id,
                                "title": title, "charset": charset})

"""Arrow schemas of the documents and rejects tables that stages hand each other."""
from __future__ import annotations

import pyarrow as pa

# One row per kept document, written by ingest as Parquet parts under <work>/ingest/<corpus>/.
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("corpus", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        # 1-based line for JSONL, 0-based row for Parquet, 0 for a .txt file (one document per file).
        pa.field("line", pa.int64(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("lang_score", pa.float32(), nullable=False),
        pa.field("n_chars", pa.int64(), nullable=False),
        # xxh3-128 of the normalised text, hex: the key of exact deduplication.
        pa.field("content_hash", pa.string(), nullable=False),
        # The record's other fields (source, license, domain, ...) as a JSON object, kept for provenance.
        pa.field("meta", pa.string(), nullable=True),
        # Crawled web pages (WARC): where and when the page was captured; null for other inputs.
        pa.field("url", pa.string(), nullable=True),
        pa.field("host", pa.string(), nullable=True),
        pa.field("crawl_date", pa.string(), nullable=True),  # WARC-Date, ISO 8601
        pa.field("warc_record_id", pa.string(), nullable=True),
        pa.field("title", pa.string(), nullable=True),
        pa.field("charset", pa.string(), nullable=True),  # the charset the page was decoded with
    ]
)
WEB_FIELDS = ("url", "host", "crawl_date", "warc_record_id", "title", "charset")

# One row per rejected record, whatever stage rejected it. docs_in == kept + rejected.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("corpus", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=True),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
        pa.field("excerpt", pa.string(), nullable=True),
        # Dedup: the kept document this one duplicates, and the estimated Jaccard similarity.
        pa.field("duplicate_of", pa.string(), nullable=True),
        pa.field("similarity", pa.float32(), nullable=True),
    ]
)


# What a filter stage (dedup, decontam, classify) decided about each document it judged: one row per document the
# stages before it kept, in the part's order, written beside the ingest part (the documents are never rewritten).
# Classify's verdicts carry its annotations too (schemas/annotations.py). A later stage reads the part and applies
# every verdict before it; the rejects a person reads are the rows not kept, joined with the part's source and text.
VERDICT_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),  # the document's row in its ingest part
        pa.field("id", pa.string(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),  # the reject reason when not kept
        pa.field("detail", pa.string(), nullable=True),
        # Dedup: the kept document this one duplicates, and the Jaccard similarity.
        pa.field("duplicate_of", pa.string(), nullable=True),
        pa.field("similarity", pa.float32(), nullable=True),
    ]
)


class RejectReason:
    """Reasons a record is rejected. Strings, so that reports and filters read plainly."""

    MALFORMED_JSON = "malformed_json"
    INVALID_UTF8 = "invalid_utf8"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TEXT = "missing_text_field"
    TEXT_NOT_STRING = "text_not_string"
    BAD_METADATA = "bad_metadata"  # the record's other fields cannot be stored (nested past any JSON library's limit)
    SYMLINK_OUTSIDE_ROOT = "symlink_outside_root"  # an input link that leads out of the folder it was found in
    EMPTY = "empty_text"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"  # main-content extraction ran past ingest.web.extract_timeout_s
    TRUNCATED = "truncated_file"
    CORRUPT_FILE = "corrupt_file"
    BINARY_FILE = "binary_file"
    UNREADABLE_FILE = "unreadable_file"
    LANGUAGE = "language"
    HTTP_STATUS = "http_status"  # a WARC response that is not 200 (redirect, 404, ...)
    NOT_HTML = "not_html"  # a WARC response whose payload is not HTML (image, CSS, script, PDF)
    REVISIT = "revisit"  # a WARC revisit record: no payload of its own
    URL_BLOCKED = "url_blocked"  # the URL's host or a substring is blocked by config
    UNDECODABLE = "undecodable"  # no charset decodes the payload
    NO_MAIN_CONTENT = "no_main_content"  # nothing left after main-content extraction
    MALFORMED_RECORD = "malformed_record"  # a WARC record that cannot be parsed: the reader goes on at the next one
    DUPLICATE_URL = "duplicate_url"  # the same URL crawled again: the latest capture is kept
    CONTAMINATED = "contaminated"  # shares an n-gram with an evaluation set (the detail names it)
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"


EXCERPT_CHARS = 160


def reject_row(stage: str, corpus: str, source_file: str, line: int, doc_id: str | None, reason: str,
               detail: str | None, text: str | bytes | None, duplicate_of: str | None = None,
               similarity: float | None = None) -> dict:
    """One row of a rejects table (REJECT_SCHEMA), its excerpt cut from the record's text: every stage builds its
    reject rows here."""
    return dict(stage=stage, corpus=corpus, source_file=source_file, line=line, id=doc_id, reason=reason,
                detail=detail, excerpt=excerpt(text), duplicate_of=duplicate_of, similarity=similarity)


def excerpt(text: str | bytes | None) -> str | None:
    """A short, printable excerpt of a rejected record for the rejects table."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return text[:EXCERPT_CHARS]

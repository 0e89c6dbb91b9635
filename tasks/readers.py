"""Streaming readers of raw input files: JSONL (.jsonl, .gz, .zst), Parquet and .txt documents.

Every reader yields one `RawRecord` per record it meets, good or bad, so that nothing is dropped
silently: a bad record carries a reject reason instead of a payload. Memory stays bounded by one
batch (Parquet) or one line capped at `max_bytes` (JSONL): an oversized line is skipped in chunks.
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import pyarrow.parquet as pq
import zstandard

from schemas.documents import RejectReason as R

SNIFF_BYTES = 8192
CHUNK = 1 << 20


@dataclass(slots=True)
class RawRecord:
    line: int
    record: dict[str, Any] | None = None  # the parsed record, when it parsed
    reason: str | None = None  # a reject reason, when it did not
    detail: str | None = None
    raw: bytes | str | None = None  # what to show in the rejects excerpt


class FileLevelError(Exception):
    """The whole file cannot be read (not gzip, binary, permission denied): one reject for the file."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def input_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".ndjson.zst")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".txt"):
        return "txt"
    return None


def _open_binary(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot open: {err.strerror or err}") from None
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if name.endswith(".zst"):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), CHUNK)
    return io.BufferedReader(raw, CHUNK)


def _sniff(stream: io.BufferedIOBase) -> None:
    """Refuse binary content (a NUL byte early on) and non-compressed data behind a .gz/.zst name."""
    try:
        head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    except (gzip.BadGzipFile, zstandard.ZstdError, zlib.error) as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"not a valid compressed file: {err}") from None
    except EOFError as err:
        raise FileLevelError(R.TRUNCATED, f"compressed stream ends early: {err}") from None
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot read: {err}") from None
    if b"\x00" in head:
        raise FileLevelError(R.BINARY_FILE, "NUL bytes in the first 8 KiB: not a text file")


def _classify_bad_json(line: bytes, err: Exception) -> tuple[str, str]:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as uerr:
        return R.INVALID_UTF8, f"invalid UTF-8 at byte {uerr.start}"
    return R.MALFORMED_JSON, str(err)[:200]


def read_jsonl(path: Path, max_bytes: int) -> Iterator[RawRecord]:
    stream = _open_binary(path)
    with stream:
        _sniff(stream)
        lineno = 0
        while True:
            try:
                line = stream.readline(max_bytes + 1)
                if not line:
                    return
                lineno += 1
                if len(line) > max_bytes and not line.endswith(b"\n"):
                    head = line[:SNIFF_BYTES]
                    size = len(line)
                    while line and not line.endswith(b"\n"):  # skip the rest without holding it
                        line = stream.readline(CHUNK)
                        size += len(line)
                    yield RawRecord(lineno, reason=R.TOO_LARGE, detail=f"{size} bytes > max_doc_bytes {max_bytes}", raw=head)
                    continue
            except EOFError as err:
                yield RawRecord(lineno + 1, reason=R.TRUNCATED, detail=f"compressed stream ends early: {err}")
                return
            except (gzip.BadGzipFile, zlib.error, zstandard.ZstdError, OSError) as err:
                yield RawRecord(lineno + 1, reason=R.CORRUPT_FILE, detail=f"read error: {err}")
                return
            if len(line) > max_bytes:
                yield RawRecord(lineno, reason=R.TOO_LARGE, detail=f"{len(line)} bytes > max_doc_bytes {max_bytes}", raw=line[:SNIFF_BYTES])
                continue
            if not line.strip():  # a blank line is no record; line numbers still count it
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                reason, detail = _classify_bad_json(line, err)
                yield RawRecord(lineno, reason=reason, detail=detail, raw=line)
                continue
            if not isinstance(rec, dict):
                yield RawRecord(lineno, reason=R.NOT_AN_OBJECT, detail=f"a JSON {type(rec).__name__}, not an object", raw=line)
                continue
            yield RawRecord(lineno, record=rec)


def read_parquet(path: Path, batch_size: int) -> Iterator[RawRecord]:
    try:
        pf = pq.ParquetFile(path)
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot open: {getattr(err, 'strerror', None) or err}") from None
    except Exception as err:  # pyarrow raises ArrowInvalid for a file that is not Parquet
        raise FileLevelError(R.UNREADABLE_FILE, f"not a Parquet file: {err}") from None
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                yield RawRecord(row, record=rec)
                row += 1
    except Exception as err:  # a corrupt page or row group: what came before is kept
        yield RawRecord(row, reason=R.CORRUPT_FILE, detail=f"read error: {err}"[:300])


def read_txt(path: Path, max_bytes: int, text_field: str) -> Iterator[RawRecord]:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            with open(path, "rb") as f:
                head = f.read(SNIFF_BYTES)
            yield RawRecord(0, reason=R.TOO_LARGE, detail=f"{size} bytes > max_doc_bytes {max_bytes}", raw=head)
            return
        data = path.read_bytes()
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot read: {err.strerror or err}") from None
    if b"\x00" in data[:SNIFF_BYTES]:
        raise FileLevelError(R.BINARY_FILE, "NUL bytes in the first 8 KiB: not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        yield RawRecord(0, reason=R.INVALID_UTF8, detail=f"invalid UTF-8 at byte {err.start}", raw=data[:SNIFF_BYTES])
        return
    yield RawRecord(0, record={text_field: text})


def read_records(path: Path, *, max_bytes: int, batch_size: int, text_field: str) -> Iterator[RawRecord]:
    kind = input_kind(path)
    if kind == "jsonl":
        return read_jsonl(path, max_bytes)
    if kind == "parquet":
        return read_parquet(path, batch_size)
    if kind == "txt":
        return read_txt(path, max_bytes, text_field)
    raise FileLevelError(R.UNREADABLE_FILE, f"unsupported file type: {path.name}")

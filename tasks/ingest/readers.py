"""Streaming readers of raw input files: JSONL (.jsonl, .gz, .zst), Parquet and .txt documents.

Every reader yields one `RawRecord` per record it meets, good or bad, so that nothing is dropped
silently: a bad record carries a reject reason instead of a payload. Memory stays bounded by one
batch (Parquet) or one line capped at `max_bytes` (JSONL): an oversized line is skipped in chunks.

Whatever the bytes look like, a file is read record by record: a compressed stream cut short is
`truncated_file` after the records before the cut (gzip and zstd alike); UTF-16 (a BOM, or text whose every
other byte is NUL) is decoded; CR-only line endings are lines; a UTF-8 BOM is not part of the first record; a NUL
inside one record makes that record malformed, not the whole file binary. Only content that is not text at all
(a known binary signature, or NULs throughout) is one `binary_file` reject.
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import pyarrow.parquet as pq
import zstandard

from curate.schemas.documents import RejectReason as R

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
    if name.endswith((".warc", ".warc.gz")):
        return "warc"
    if name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".ndjson.zst")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".txt"):
        return "txt"
    return None


class _Transform(io.RawIOBase):
    """A readable stream of what `_next()` makes of the raw stream's chunks (b'' at the end)."""

    def __init__(self, raw: io.BufferedIOBase):
        self.raw, self.pending = raw, b""

    def _next(self) -> bytes:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self.pending:
            self.pending = self._next()
            if not self.pending:
                return 0
        n = min(len(buf), len(self.pending))
        buf[:n], self.pending = self.pending[:n], self.pending[n:]
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


class _ZstdReader(_Transform):
    """Decompresses zstd frames one after another and raises EOFError when the input ends inside a frame
    (zstandard's own stream_reader returns b'' there, so a cut file would look complete)."""

    def __init__(self, raw: io.BufferedIOBase):
        super().__init__(raw)
        self.dobj, self.in_frame = zstandard.ZstdDecompressor().decompressobj(), False

    def _next(self) -> bytes:
        out = b""
        while not out:
            chunk = self.raw.read(CHUNK)
            if not chunk:
                if self.in_frame:
                    raise EOFError("the input ends inside a zstd frame")
                return b""
            while chunk:
                self.in_frame = True
                out += self.dobj.decompress(chunk)
                chunk = b""
                if self.dobj.eof:  # a frame ended; what follows is the next frame
                    chunk, self.in_frame = self.dobj.unused_data, False
                    self.dobj = zstandard.ZstdDecompressor().decompressobj()
        return out


class _Recoded(_Transform):
    """A byte stream re-encoded as UTF-8 lines: from UTF-16, and/or with lone CRs made newlines."""

    def __init__(self, raw: io.BufferedIOBase, encoding: str | None, cr_only: bool):
        super().__init__(raw)
        self.cr_only = cr_only
        self.decoder = codecs.getincrementaldecoder(encoding)("replace") if encoding else None

    def _next(self) -> bytes:
        while True:  # a chunk can end inside a character and decode to nothing: read on until the end
            chunk = self.raw.read(CHUNK)
            out = self.decoder.decode(chunk, final=not chunk).encode("utf-8", "surrogatepass") if self.decoder else chunk
            if out or not chunk:
                return out.replace(b"\r", b"\n") if self.cr_only else out


_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x7fELF", b"\x1f\x8b", b"(\xb5/\xfd",
                 b"PAR1", b"ARROW1")


# Bytes that occur in text (UTF-8 included); more than 5% of anything else in the head is not text.
_TEXT_BYTES = bytes([7, 8, 9, 10, 11, 12, 13, 27]) + bytes(range(32, 127)) + bytes(range(128, 256))


def _open_binary(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot open: {err.strerror or err}") from None
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(raw), CHUNK)
    return io.BufferedReader(raw, CHUNK)


def _utf16(head: bytes) -> str | None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    even, odd = head[0:512:2], head[1:512:2]
    if len(head) >= 16 and odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if len(head) >= 16 and even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _compressed_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith((b"\x1f\x8b", b"(\xb5/\xfd"))
    except OSError:
        return False


def _sniff(stream: io.BufferedIOBase, path: Path) -> io.BufferedIOBase:
    """The stream to read lines from: refuse content that is not text (and non-compressed data behind a
    .gz/.zst name); decode UTF-16; turn CR-only line endings into newlines."""
    try:
        head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    except (gzip.BadGzipFile, zstandard.ZstdError, zlib.error) as err:
        if _compressed_magic(path):  # it is gzip/zstd, damaged before its first record
            raise FileLevelError(R.CORRUPT_FILE, f"compressed data is damaged (0 records read): {err}") from None
        raise FileLevelError(R.UNREADABLE_FILE, f"not a valid compressed file: {err}") from None
    except EOFError as err:
        raise FileLevelError(R.TRUNCATED, f"compressed stream ends early (0 records read): {err}") from None
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot read: {err}") from None
    encoding = _utf16(head)
    if encoding is None:
        if head.startswith(_BINARY_MAGIC):
            raise FileLevelError(R.BINARY_FILE, f"binary content (signature {head[:4]!r}): not a text file")
        if len(head.translate(None, _TEXT_BYTES)) > len(head) // 20:
            raise FileLevelError(R.BINARY_FILE, "control bytes throughout the first 8 KiB: not a text file")
        text_head = head
    else:
        text_head = head.decode(encoding, "replace").encode("utf-8")
    cr_only = b"\r" in text_head and b"\n" not in text_head
    if encoding or cr_only:
        return io.BufferedReader(_Recoded(stream, encoding, cr_only), CHUNK)
    return stream


_LONG_INT = re.compile(rb"(?<![\d.eE+-])-?\d{19,}(?![\d.eE])")


def parse_record(line: bytes):
    """The JSON value of one line. Integers beyond 64 bits keep every digit (orjson would make them floats, so two
    distinct ids could collide); a UTF-8 BOM before the first record is not part of it."""
    if line.startswith(codecs.BOM_UTF8):
        line = line[3:]
    if _LONG_INT.search(line):
        try:
            return json.loads(line)
        except (ValueError, RecursionError) as err:
            raise orjson.JSONDecodeError(str(err), "", 0) from None
    return orjson.loads(line)


def _classify_bad_json(line: bytes, err: Exception) -> tuple[str, str]:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as uerr:
        return R.INVALID_UTF8, f"invalid UTF-8 at byte {uerr.start}"
    return R.MALFORMED_JSON, str(err)[:200]


def read_jsonl(path: Path, max_bytes: int) -> Iterator[RawRecord]:
    stream = _open_binary(path)
    with stream:
        stream = _sniff(stream, path)
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
                yield RawRecord(lineno + 1, reason=R.TRUNCATED,
                                detail=f"compressed stream ends early, after {lineno} lines: {err}")
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
                rec = parse_record(line)
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
    head = data[:SNIFF_BYTES]
    encoding = _utf16(head)
    if encoding is None and (head.startswith(_BINARY_MAGIC) or b"\x00" in head):
        raise FileLevelError(R.BINARY_FILE, "NUL bytes or a binary signature in the first 8 KiB: not a text file")
    try:
        text = data.decode(encoding or "utf-8-sig")
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

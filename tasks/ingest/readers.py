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

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
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
    """Decompresses zstd frames one after another, a bounded block of output at a time (a frame of a few kilobytes
    can expand to gigabytes: it is never held whole), and raises EOFError when the input ends inside a frame
    (zstandard's reader returns b'' there, so a cut file would look complete: the frames' structure says)."""

    def __init__(self, raw: io.BufferedIOBase):
        super().__init__(raw)
        self.reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK, read_across_frames=True,
                                                                  closefd=False)

    def _next(self) -> bytes:
        out = self.reader.read(CHUNK)
        if not out and not zstd_frames_complete(self.raw):
            raise EOFError("the input ends inside a zstd frame")
        return out


_ZSTD_MAGIC, _SKIPPABLE = 0xFD2FB528, range(0x184D2A50, 0x184D2A60)


def zstd_frames_complete(f) -> bool:
    """Whether a zstd file is whole frames to its end, walking the frames' headers and blocks without decompressing
    (RFC 8878: a frame header, blocks of a 3-byte header each, the last one flagged, an optional checksum)."""
    size = f.seek(0, io.SEEK_END)
    pos = f.seek(0)
    while pos < size:
        head = f.read(4)
        if len(head) < 4:
            return False
        magic = int.from_bytes(head, "little")
        if magic in _SKIPPABLE:
            skip = f.read(4)
            pos = f.seek(int.from_bytes(skip, "little"), io.SEEK_CUR) if len(skip) == 4 else size + 1
            continue
        if magic != _ZSTD_MAGIC or not (pos := _frame_end(f)):
            return False
    return pos == size


def _frame_end(f) -> int:
    """The offset after the frame whose magic was just read; 0 when it does not end within the file."""
    fhd = f.read(1)
    if not fhd:
        return 0
    fhd = fhd[0]
    single = (fhd >> 5) & 1
    f.seek((0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + ((1 if single else 0), 2, 4, 8)[fhd >> 6], io.SEEK_CUR)
    while True:
        block = f.read(3)
        if len(block) < 3:
            return 0
        v = int.from_bytes(block, "little")
        f.seek(1 if (v >> 1) & 3 == 1 else v >> 3, io.SEEK_CUR)  # an RLE block holds one byte
        if v & 1:
            break
    pos = f.seek(4 if (fhd >> 2) & 1 else 0, io.SEEK_CUR)
    return pos if pos <= f.seek(0, io.SEEK_END) and f.seek(pos) == pos else 0


class DecompressionBomb(Exception):
    """A compressed input that expands past what any corpus file does: the rest of the file is not read."""


class _Meter:
    """What a compressed input has given so far, held to a ceiling: at most `max_bytes` out of one file and, past the
    first 32 MB, at most `max_ratio` bytes out per compressed byte read (deflate itself cannot pass 1,032; a file of
    only newlines or NULs does). Past either is a DecompressionBomb, which the reader turns into one reject."""

    def __init__(self, compressed, max_bytes: int = 0, max_ratio: float = 0):
        self.compressed, self.out = compressed, 0
        self.max_bytes, self.max_ratio = max_bytes or MAX_FILE_BYTES, max_ratio or MAX_RATIO

    def add(self, n: int) -> None:
        self.out += n
        if self.compressed is None or self.out < 32 << 20:
            return
        read_in = max(1, self.compressed.tell())
        if self.out > self.max_bytes or self.out > self.max_ratio * read_in:
            raise DecompressionBomb(f"{self.out:,} bytes out of {read_in:,} compressed (the limits: "
                                    f"{self.max_bytes:,} bytes a file, {self.max_ratio:g} to 1): the rest is not read")


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


MAX_FILE_BYTES = 1 << 40  # decompressed bytes of one input file: a terabyte is past any corpus file, not past a bomb
MAX_RATIO = 1000


def _open_binary(path: Path) -> tuple[io.BufferedIOBase, _Meter]:
    """The file's decompressed bytes, and the meter that holds them to their ceiling (read_jsonl feeds it)."""
    name = path.name.lower()
    try:
        raw = path.open("rb")
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot open: {err.strerror or err}") from None
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), _Meter(raw)
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(raw), CHUNK), _Meter(raw)
    return io.BufferedReader(raw, CHUNK), _Meter(None)


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
        with path.open("rb") as f:
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
    except DecompressionBomb as err:
        raise FileLevelError(R.TOO_LARGE, f"a decompression bomb: {err}") from None
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


def _skip_blank(stream: io.BufferedReader, meter: _Meter) -> int:
    """Skip the blank lines that follow in the stream's buffer at C speed (a file of nothing but newlines would take
    minutes a line at a time); returns the newlines skipped. A partial blank line stays for readline."""
    skipped = 0
    while True:
        buf = stream.peek(CHUNK)[:CHUNK]
        n = len(buf) - len(buf.lstrip(b"\n\r \t"))
        n = buf.rfind(b"\n", 0, n) + 1  # whole lines only
        if n <= 0:
            return skipped
        skipped += buf.count(b"\n", 0, n)
        meter.add(len(stream.read(n)))


def read_jsonl(path: Path, max_bytes: int) -> Iterator[RawRecord]:
    stream, meter = _open_binary(path)
    with stream:
        stream = _sniff(stream, path)
        lineno, blank = 0, False
        while True:
            try:
                if blank:
                    lineno, blank = lineno + _skip_blank(stream, meter), False
                line = stream.readline(max_bytes + 1)
                meter.add(len(line))
                if not line:
                    return
                lineno += 1
                if len(line) > max_bytes and not line.endswith(b"\n"):
                    head = line[:SNIFF_BYTES]
                    size = len(line)
                    while line and not line.endswith(b"\n"):  # skip the rest without holding it
                        line = stream.readline(CHUNK)
                        size += len(line)
                        meter.add(len(line))
                    yield RawRecord(lineno, reason=R.TOO_LARGE, detail=f"{size} bytes > max_doc_bytes {max_bytes}", raw=head)
                    continue
            except EOFError as err:
                yield RawRecord(lineno + 1, reason=R.TRUNCATED,
                                detail=f"compressed stream ends early, after {lineno} lines: {err}")
                return
            except DecompressionBomb as err:
                yield RawRecord(lineno + 1, reason=R.TOO_LARGE, detail=f"a decompression bomb: {err}")
                return
            except (gzip.BadGzipFile, zlib.error, zstandard.ZstdError, OSError) as err:
                yield RawRecord(lineno + 1, reason=R.CORRUPT_FILE, detail=f"read error: {err}")
                return
            if len(line) > max_bytes:
                yield RawRecord(lineno, reason=R.TOO_LARGE, detail=f"{len(line)} bytes > max_doc_bytes {max_bytes}", raw=line[:SNIFF_BYTES])
                continue
            if not line.strip():  # a blank line is no record; line numbers still count it (and those after it)
                blank = True
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


def read_parquet(path: Path, batch_size: int, max_bytes: int = 1 << 62) -> Iterator[RawRecord]:
    """A Parquet file's rows; an object on object storage is read by range requests (its footer, then each row
    group's column chunks), never whole."""
    if not isinstance(path, Path):
        try:
            source = path.open("rb")
        except OSError as err:
            raise FileLevelError(R.UNREADABLE_FILE, f"cannot open: {err}") from None
        with source:
            yield from _parquet_rows(source, path.stat().st_size, batch_size, max_bytes)
        return
    yield from _parquet_rows(path, None, batch_size, max_bytes)


def _parquet_rows(path, stored: int | None, batch_size: int, max_bytes: int) -> Iterator[RawRecord]:
    try:
        pf = pq.ParquetFile(path)
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"cannot open: {getattr(err, 'strerror', None) or err}") from None
    except Exception as err:  # pyarrow raises ArrowInvalid for a file that is not Parquet
        raise FileLevelError(R.UNREADABLE_FILE, f"not a Parquet file: {err}") from None
    stored = stored if stored is not None else path.stat().st_size
    _refuse_bomb(pf.metadata, stored)
    row = expanded = 0
    strings = [f.name for f in pf.schema_arrow if _is_bytes(f.type)]
    try:  # strings kept dictionary-encoded: a row's text is made only when its size is known
        pf = pq.ParquetFile(path, read_dictionary=strings or None, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=batch_size):
            sizes = _row_sizes(batch)
            expanded += int(sizes.sum())
            if _is_bomb(expanded, stored):  # rows that name one dictionary string again and again
                yield RawRecord(row, reason=R.TOO_LARGE, detail=f"a decompression bomb: {stored:,} bytes whose rows "
                                f"expand to {expanded:,} and more (over {MAX_RATIO:g} to 1): rows from here not read")
                return
            yield from _rows(batch, sizes, row, max_bytes)
            row += batch.num_rows
    except Exception as err:  # a corrupt page or row group: what came before is kept
        yield RawRecord(row, reason=R.CORRUPT_FILE, detail=f"read error: {err}"[:300])


def _is_bytes(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
        or pa.types.is_large_binary(kind)


def _refuse_bomb(meta, stored: int) -> None:
    """A file whose pages expand past MAX_RATIO to 1 (past its first 32 MB) is one too_large reject, never decoded."""
    expanded = sum(meta.row_group(g).column(c).total_uncompressed_size for g in range(meta.num_row_groups)
                   for c in range(meta.num_columns))
    if _is_bomb(expanded, stored):
        raise FileLevelError(R.TOO_LARGE, f"a decompression bomb: {stored:,} bytes that expand to {expanded:,} "
                             f"(more than {MAX_RATIO:g} to 1): not read")


def _is_bomb(expanded: int, stored: int) -> bool:
    return expanded > 32 << 20 and expanded > MAX_RATIO * stored


ROWS_BYTES = 32 << 20  # Python objects made of a Parquet batch at a time: rows of about this much text together


def _row_sizes(batch: pa.RecordBatch) -> np.ndarray:
    """Each row's bytes of strings, dictionary-encoded ones as they will expand."""
    sizes = np.zeros(batch.num_rows, dtype=np.int64)
    for col in batch.columns:
        if pa.types.is_dictionary(col.type):
            sizes += pc.fill_null(pc.binary_length(col.dictionary).take(col.indices), 0).to_numpy()
        elif _is_bytes(col.type):
            sizes += pc.fill_null(pc.binary_length(col), 0).to_numpy()
    return sizes


def _rows(batch: pa.RecordBatch, sizes: np.ndarray, first: int, max_bytes: int) -> Iterator[RawRecord]:
    """The batch's rows as records, a slice of about ROWS_BYTES at a time; a row over `max_bytes` is a too_large
    reject made of its first bytes only (a dictionary-encoded column can hold a gigabyte a row in a few bytes)."""
    start = 0
    while start < batch.num_rows:
        if sizes[start] > max_bytes:
            yield RawRecord(first + start, reason=R.TOO_LARGE, detail=f"{sizes[start]:,} bytes > max_doc_bytes "
                            f"{max_bytes:,}")
            start += 1
            continue
        stop = start + 1
        while stop < batch.num_rows and sizes[stop] <= max_bytes and sizes[start:stop + 1].sum() <= ROWS_BYTES:
            stop += 1
        for k, rec in enumerate(batch.slice(start, stop - start).to_pylist()):
            yield RawRecord(first + start + k, record=rec)
        start = stop


def read_txt(path: Path, max_bytes: int, text_field: str) -> Iterator[RawRecord]:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            with path.open("rb") as f:
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
        return read_parquet(path, batch_size, max_bytes)
    if kind == "txt":
        return read_txt(path, max_bytes, text_field)
    raise FileLevelError(R.UNREADABLE_FILE, f"unsupported file type: {path.name}")

"""Ingest: one input file → Parquet parts of normalised, language-tagged documents and a rejects part.

The only stage that writes text: every later stage reads these parts and writes its verdicts beside them.
`ingest_file` is the plain function (testable without Prefect). It is idempotent: a file whose input fingerprint
and ingest config match a completed earlier run is reused, not recomputed.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from curate.schemas.config import IngestConfig
from curate.schemas.documents import DOCUMENT_SCHEMA, REJECT_SCHEMA, WEB_FIELDS, reject_row
from curate.schemas.documents import RejectReason as R
from curate.schemas.inputs import Corpus, InputFile
from curate.schemas.report import CorpusReport, FileResult, Part, summed
from curate.schemas.work_root import WorkRoot
from curate.tasks.text.langid import identify
from curate.tasks.text.normalize import normalize_text
from curate.tasks.ingest.remote import input_path
from curate.tasks.ingest.readers import FileLevelError, RawRecord, input_kind, read_records
from curate.tasks.ingest.web import WarcTally, WebFilter, read_warc
from curate.tasks.engine.files import atomic_path, file_fingerprint, read_index, size_of, write_json_atomic
from curate.tasks.engine.stage import Job, Run, Stage, Step

STAGE = "ingest"
# Parquet settings are fixed so that the same input and config give byte-identical parts.
PARQUET_OPTS = dict(compression="zstd", compression_level=1, use_dictionary=["corpus", "source_file", "lang"])


def part_key(source_file: str) -> str:
    """A stable, filesystem-safe name for one input file's parts."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source_file)[-80:]
    return f"{stem}-{hashlib.sha1(source_file.encode()).hexdigest()[:10]}"


def part_paths(work_root: Path, job: InputFile) -> tuple[Path, Path, Path]:
    """(the name its documents parts start with, its rejects, its done record) of one input file."""
    base = WorkRoot(work_root).stage(STAGE, job.corpus) / part_key(job.source_file)
    return base, base.with_name(base.name + ".rejects.parquet"), base.with_name(base.name + ".done.json")


def docs_part(base: Path, k: int) -> Path:
    """The k-th documents part of the input file whose outputs are named after `base`."""
    return base.with_name(f"{base.name}.{k:05d}.docs.parquet")


class _DocsParts:
    """The documents parts of one input file, written in turn: a part is committed (renamed into place) once it
    holds `limit` bytes of text, and the next one opened. The first is always written, empty or not. A failure
    leaves the open part's temporary file removed; the file's done record, written after all of them, is the
    commit point of the whole set."""

    def __init__(self, base: Path, limit: int):
        self.base, self.limit = base, limit
        self.paths: list[Path] = []
        self.rows: list[int] = []  # of each part
        self.texts: list[int] = []  # text bytes of each part
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def _open(self) -> None:
        path = docs_part(self.base, len(self.paths))
        tmp = self._stack.enter_context(atomic_path(path))
        self._writer = self._stack.enter_context(pq.ParquetWriter(tmp, DOCUMENT_SCHEMA, **PARQUET_OPTS))
        self.paths.append(path)
        self.rows.append(0)
        self.texts.append(0)

    @property
    def text_bytes(self) -> int:
        """Text bytes of the open part (0 when none is open)."""
        return self.texts[-1] if self._writer is not None else 0

    def write(self, table: pa.Table, text_bytes: int) -> None:
        if self._writer is None:
            self._open()
        self._writer.write_table(table)
        self.rows[-1] += table.num_rows
        self.texts[-1] += text_bytes

    def full(self) -> bool:
        return self.text_bytes >= self.limit

    def close_part(self) -> None:
        """Commit the open part; the next write opens another."""
        self._stack.close()
        self._writer = None

    def __enter__(self) -> "_DocsParts":
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is None and not self.paths and exc[0] is None:
            self._open()  # a file with no document still has its (empty) first part
        self._stack.__exit__(*exc)


def meta_to_json(meta: dict) -> str:
    """A record's other fields as sorted, compact JSON; integers beyond 64 bits keep their digits (orjson refuses
    them, the standard library does not)."""
    try:
        return orjson.dumps(meta, option=orjson.OPT_SORT_KEYS, default=str).decode()
    except TypeError:
        return json.dumps(meta, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))


class _RecordWriter:
    """Accumulates accepted records and rejects; flushes them to the two Parquet writers."""

    def __init__(self, job: InputFile, cfg: IngestConfig, docs: _DocsParts, rejects: pq.ParquetWriter):
        self.job, self.cfg, self.docs_w, self.rej_w = job, cfg, docs, rejects
        self.rows: list[tuple] = []  # id, line, text, meta, then the web fields (WEB_FIELDS)
        self.pending_chars = 0  # of the rows not yet written
        self.rejects: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.langs: Counter[str] = Counter()
        self.docs_in = self.kept = self.text_bytes = 0

    def reject(self, line: int, reason: str, detail: str | None, raw: Any = None, doc_id: str | None = None) -> None:
        self.reasons[reason] += 1
        self.rejects.append(
            reject_row(STAGE, self.job.corpus, self.job.source_file, line, doc_id, reason, detail, raw)
        )

    def add(self, raw: RawRecord) -> None:
        self.docs_in += 1
        if raw.reason is not None:
            self.reject(raw.line, raw.reason, raw.detail, raw.raw)
        else:
            self._accept(raw.line, raw.record)
        if len(self.rows) >= self.cfg.batch_size or \
                self.docs_w.text_bytes + self.pending_chars >= self.cfg.part_text_bytes:
            self.flush()
            if self.docs_w.full():
                self.docs_w.close_part()

    def _accept(self, line: int, rec: dict[str, Any]) -> None:
        cfg = self.cfg
        raw_id = rec.get(cfg.id_field)
        doc_id = str(raw_id) if raw_id is not None else f"{self.job.corpus}/{self.job.source_file}/{line}"
        if cfg.text_field not in rec or rec[cfg.text_field] is None:
            return self.reject(line, R.MISSING_TEXT, f"no '{cfg.text_field}' field", orjson.dumps(rec, default=str), doc_id)
        text = rec[cfg.text_field]
        if not isinstance(text, str):
            return self.reject(line, R.TEXT_NOT_STRING, f"'{cfg.text_field}' is a {type(text).__name__}", repr(text), doc_id)
        if len(text) > cfg.max_doc_bytes:  # Parquet/txt rows: JSONL lines were capped while reading
            return self.reject(line, R.TOO_LARGE, f"{len(text)} chars > max_doc_bytes {cfg.max_doc_bytes}", text, doc_id)
        norm = normalize_text(text)
        if len(norm) < cfg.min_doc_chars:
            return self.reject(line, R.EMPTY, f"{len(norm)} chars after normalisation", text, doc_id)
        meta = {k: v for k, v in rec.items() if k != cfg.text_field and k != cfg.id_field and k not in WEB_FIELDS}
        try:
            meta_json = meta_to_json(meta) if meta else None
        except (TypeError, ValueError, RecursionError) as err:
            return self.reject(line, R.BAD_METADATA, f"its other fields cannot be kept as JSON: {err}"[:200], text, doc_id)
        web = tuple(str(rec[k]) if rec.get(k) is not None else None for k in WEB_FIELDS)
        self.rows.append((doc_id, line, norm, meta_json, *web))
        self.pending_chars += len(norm)

    def flush(self) -> None:
        if self.rows:
            self._write_docs()
        if self.rejects:
            self.rej_w.write_table(pa.Table.from_pylist(self.rejects, schema=REJECT_SCHEMA))
            self.rejects = []

    def _write_docs(self) -> None:
        ids, lines, texts, metas, *web = map(list, zip(*self.rows))
        self.rows, self.pending_chars = [], 0
        langs, scores = identify(texts, self.cfg.lid_max_chars, self.cfg.lid_windows)
        allow = self.cfg.lang_allowlist
        keep = [True] * len(texts)
        if allow is not None:
            for i, (lang, score) in enumerate(zip(langs, scores)):
                if lang not in allow or score < self.cfg.lang_min_score:
                    keep[i] = False
                    self.reject(lines[i], R.LANGUAGE, f"{lang} ({score:.2f}) not in allowlist", texts[i], ids[i])
            if not all(keep):
                ids, lines, texts, metas, langs, *web = ([v for v, k in zip(col, keep) if k]
                                                         for col in (ids, lines, texts, metas, langs, *web))
                scores = scores[keep]
        encoded = [t.encode("utf-8") for t in texts]
        text_bytes = sum(map(len, encoded))
        self.kept += len(texts)
        self.text_bytes += text_bytes
        self.langs.update(langs)
        n = len(texts)
        table = pa.Table.from_arrays(
            [
                pa.array(ids, pa.string()),
                pa.array([self.job.corpus] * n, pa.string()),
                pa.array([self.job.source_file] * n, pa.string()),
                pa.array(lines, pa.int64()),
                pa.array(texts, pa.large_string()),
                pa.array(langs, pa.string()),
                pa.array(scores, pa.float32()),
                pa.array([len(t) for t in texts], pa.int64()),
                pa.array([xxhash.xxh3_128_hexdigest(b) for b in encoded], pa.string()),
                pa.array(metas, pa.string()),
                *(pa.array(col, pa.string()) for col in web),
            ],
            schema=DOCUMENT_SCHEMA,
        )
        self.docs_w.write(table, text_bytes)


def _input_key(job: InputFile) -> str:
    if job.refused:  # nothing is read: the refusal itself is the fingerprint
        return f"refused:{job.refused}"
    if job.version:  # an object on object storage: its version as listed (reading it here would download it)
        return job.version
    try:
        return file_fingerprint(Path(job.path))
    except OSError as err:
        return f"unreadable:{err.strerror}"


def _input_bytes(job: InputFile) -> int:
    """The input file's bytes as stored (0 for a refused or unreadable one)."""
    if job.refused:
        return 0
    return job.size if job.size is not None else size_of(Path(job.path))


def _key(job: Job) -> dict:
    return {"input": _input_key(job.unit), "config": job.settings.model_dump(mode="json")}


def ingest_file(file: InputFile, cfg: IngestConfig, work_root: str | Path) -> FileResult:
    """Ingest one file. Reuses a completed earlier output for the same input content and config."""
    return INGEST_FILE.run(Job(file, cfg, str(work_root)))


def _ingest(task: Job, key: dict) -> FileResult:
    job, cfg, work_root = task.unit, task.settings, task.root
    base, rejects_path, _ = part_paths(work_root, job)
    path = input_path(job.path, job.size)  # a local file, or an object streamed from object storage
    bytes_in = _input_bytes(job)
    t0 = time.perf_counter()
    with atomic_path(rejects_path) as rej_tmp, _DocsParts(base, cfg.part_text_bytes) as docs_w:
        with pq.ParquetWriter(rej_tmp, REJECT_SCHEMA, compression="zstd") as rej_w:
            acc = _RecordWriter(job, cfg, docs_w, rej_w)
            tally = WarcTally()
            try:
                if job.refused:
                    raise FileLevelError(*job.refused)
                if input_kind(path) == "warc":
                    records = read_warc(path, cfg.max_doc_bytes, cfg.text_field, cfg.id_field, cfg.web,
                                        _url_filter(cfg), tally)
                else:
                    records = read_records(path, max_bytes=cfg.max_doc_bytes, batch_size=cfg.batch_size,
                                           text_field=cfg.text_field)
                for raw in records:
                    acc.add(raw)
            except FileLevelError as err:
                acc.docs_in += 1  # the file stands for at least one record we could not read
                acc.reject(0, err.reason, err.detail)
            acc.flush()
    result = FileResult(
        corpus=job.corpus, source_file=job.source_file, docs_in=acc.docs_in, kept=acc.kept,
        rejected=sum(acc.reasons.values()), by_reason=dict(sorted(acc.reasons.items())), bytes_in=bytes_in,
        text_bytes=acc.text_bytes, langs=dict(sorted(acc.langs.items())), record_types=dict(sorted(tally.types.items())),
        text_bytes_in=acc.text_bytes,
        parts=[Part(corpus=job.corpus, source_file=job.source_file, docs_path=str(p.relative_to(work_root)),
                    rows=n, text_bytes=b) for p, n, b in zip(docs_w.paths, docs_w.rows, docs_w.texts)],
        rejects_path=str(rejects_path.relative_to(work_root)),
        seconds=round(time.perf_counter() - t0, 3),
    )
    return result


INGEST_FILE = Step(
    STAGE, __name__, FileResult, _ingest, _key,
    record=lambda job: part_paths(job.root, job.unit)[2],
    outputs=lambda res, work_root: [*(work_root / p.docs_path for p in res.parts), work_root / res.rejects_path],
    describe=lambda r: f"{r.docs_in:,} in, {r.kept:,} kept"
    + (" (reused)" if r.reused else f" ({r.seconds:.1f}s)"),
    size=lambda job: _input_bytes(job.unit))


def _jobs(run: Run) -> list[Job]:
    return [run.job(f, run.cfg.ingest, label=f"{f.corpus}/{f.source_file}") for c in run.inputs for f in c.files]


def _fold(run: Run, results: list[FileResult]) -> None:
    """Each corpus's files: its report, its parts for the later stages, and its index (the parts of its latest
    ingest, which later stages and the manifest take, never a glob of the folder)."""
    for corpus in run.inputs:
        files = sorted((r for r in results if r.corpus == corpus.name), key=lambda r: r.source_file)
        write_json_atomic(WorkRoot(run.work_root).corpus_index(corpus.name),
                          {"corpus": corpus.name, "files": [f.model_dump(mode="json") for f in files]})
        report = summed(CorpusReport, corpus.name, files)
        report.files, report.files_reused = len(files), sum(f.reused for f in files)
        run.report.corpora.append(report)
        run.parts[corpus.name] = [p for f in files for p in f.parts]


INGEST = Stage(STAGE, INGEST_FILE, _jobs, fold=_fold)


class NameTaken(ValueError):
    """A corpus name the work root's dedup index holds with other content: the message names it and what to do."""


def check_names(work_root: str | Path, corpora: list[Corpus], cfg: IngestConfig) -> None:
    """Before anything is written: a corpus under a name the work root has curated and registered in its dedup index,
    with other input files or other ingest settings, is refused. Ingesting it would write over the parts that name
    holds (the index verifies against them) and leave the corpus's index naming parts dedup then refuses, so the
    next manifest would lose most of the original corpus. The same inputs and settings are a resume."""
    registered = registered_names(work_root)
    for corpus in corpora:
        if corpus.name not in registered:
            continue
        if changed := _changed_inputs(Path(work_root), corpus, cfg):
            raise NameTaken(
                f"corpus {corpus.name!r} is already curated in {work_root} with other content ({len(changed)} input "
                f"file(s) differ, e.g. {changed[0]!r}, or other ingest settings): earlier decisions never change, so "
                f"curate the new content under a new name ({corpus.name}-2=PATH on the command line, a folder "
                f"{corpus.name}-2 in a landing folder)")


def registered_names(work_root: str | Path) -> set[str]:
    """The corpora the work root's dedup index holds (whose decisions never change)."""
    registry = read_index(WorkRoot(work_root).dedup_index() / "registry.json")
    return {c["name"] for c in registry.get("corpora", [])} if isinstance(registry, dict) else set()


def _changed_inputs(work_root: Path, corpus: Corpus, cfg: IngestConfig) -> list[str]:
    """The input files of `corpus` that its latest ingest (its index) did not take under the content key they have
    now (other bytes, other settings), and those it took that are gone."""
    index = read_index(WorkRoot(work_root).corpus_index(corpus.name)) or {"files": []}
    recorded = {f["source_file"] for f in index["files"]}
    changed = set(recorded) - {f.source_file for f in corpus.files}
    for f in corpus.files:
        if f.source_file not in recorded or INGEST_FILE.recorded(Job(f, cfg, str(work_root))) is None:
            changed.add(f.source_file)
    return sorted(changed)


@functools.lru_cache(maxsize=4)
def _filter(files: tuple[str, ...], substrings: tuple[str, ...]) -> WebFilter:
    return WebFilter.load(list(files), list(substrings))


def _url_filter(cfg: IngestConfig) -> WebFilter:
    try:
        return _filter(tuple(cfg.web.blocklist_files), tuple(cfg.web.banned_url_substrings))
    except OSError as err:
        raise FileLevelError(R.UNREADABLE_FILE, f"URL blocklist unreadable: {err}") from None

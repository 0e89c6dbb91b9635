"""Every rejected document of a work root as a person reads it (schemas/documents.REJECT_SCHEMA): ingest's rejects
(records that never became documents), then each filter's (its verdicts' rows not kept, with source file, line and
an excerpt from the part), corpus by corpus, for the parts of each corpus's latest ingest."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.schemas.work_root import WorkRoot
from curate.tasks.engine.files import corpus_parts, read_index
from curate.tasks.engine.spool import present, readable
from curate.tasks.engine.verdicts import rejects as verdict_rejects
from curate.tasks.engine.verdicts import verdicts_path

FILTERS = ("dedup", "decontam", "classify")


def rejects(work_root: str | Path, corpus: str | None = None, stage: str | None = None,
            reason: str | None = None) -> Iterator[pa.Table]:
    """Tables of rejected documents, a part (or an input file's ingest rejects) at a time, filtered by corpus, stage
    and reason when given."""
    for name, parts in corpus_parts(work_root).items():
        if corpus in (None, name):
            for table in _tables(work_root, name, parts, stage):
                if reason is not None:
                    table = table.filter(pc.equal(table.column("reason"), reason))
                if table.num_rows:
                    yield table


def _tables(work_root: str | Path, corpus: str, parts: list, stage: str | None) -> Iterator[pa.Table]:
    """One corpus's rejects tables: ingest's per input file, then each filter's per part."""
    if stage in (None, "ingest"):
        index = read_index(WorkRoot(work_root).corpus_index(corpus)) or {"files": []}
        yield from (pq.read_table(readable(Path(work_root) / f["rejects_path"])) for f in index["files"]
                    if f["rejects_path"])
    for step in (s for s in FILTERS if stage in (None, s)):
        yield from (verdict_rejects(work_root, step, p) for p in parts if present(verdicts_path(work_root, step, p)))


def rejected_fields(work_root: str | Path, report) -> list[str]:
    """The field names of the records ingest rejected for a missing text field, read off their excerpts: what the
    person who ran it will want to set ingest.text_field to."""
    import re

    for corpus in (c.corpus for c in report.corpora if c.by_reason.get("missing_text_field")):
        for table in rejects(work_root, corpus, stage="ingest", reason="missing_text_field"):
            for excerpt in table.column("excerpt").to_pylist():
                if found := re.findall(r'"([^"\\]{1,40})":', excerpt or ""):
                    return list(dict.fromkeys(found))
    return []

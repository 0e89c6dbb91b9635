"""Verdicts: what each filter stage decided about the documents of a part, written beside it (dolma's attributes).

Text is written once, by ingest. A filter (dedup, decontam, classify) writes a small table per part, one row per
document it judged (`schemas/documents.VERDICT_SCHEMA`: row, id, kept, reason, detail, ...); the next stage judges
the rows it kept. `alive` applies the verdicts of the stages before a stage, `documents` reads just those rows of the
part a batch at a time, and `rejects` is the view a person reads: the rows not kept, with the part's source file, line
and an excerpt (`schemas/documents.REJECT_SCHEMA`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.schemas.documents import REJECT_SCHEMA, VERDICT_SCHEMA, excerpt
from curate.schemas.report import Part
from curate.schemas.work_root import WorkRoot
from curate.tasks.engine.spool import readable
from curate.tasks.engine.files import file_fingerprint, open_parquet


class VerdictError(RuntimeError):
    """Verdicts that do not fit the part they judge (a stage run on other documents): the message says which."""


def verdicts_path(work_root: str | Path, stage: str, part: Part) -> Path:
    return WorkRoot(work_root).verdicts(stage, part.corpus, part.name)


def _array(values, kind: pa.DataType) -> pa.Array:
    return values.cast(kind) if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, kind)


def verdict_table(rows, ids, kept, reasons, details, duplicate_of=None, similarity=None) -> pa.Table:
    """A verdict table (rows in the part's order; duplicate_of and similarity for dedup only)."""
    n = len(rows)
    return pa.table({
        "row": _array(rows, pa.int64()), "id": _array(ids, pa.string()), "kept": _array(kept, pa.bool_()),
        "reason": _array(reasons, pa.string()), "detail": _array(details, pa.string()),
        "duplicate_of": _array(duplicate_of if duplicate_of is not None else [None] * n, pa.string()),
        "similarity": _array(similarity if similarity is not None else [None] * n, pa.float32())},
        schema=VERDICT_SCHEMA)


def alive(work_root: str | Path, part: Part, stages: Sequence[str]) -> np.ndarray:
    """The rows of a part that every stage in `stages` kept (ascending). Each stage's verdicts must judge exactly the
    rows the stages before it kept: anything else is a VerdictError naming the file."""
    rows = np.arange(part.rows, dtype=np.int64)
    for stage in stages:
        path = verdicts_path(work_root, stage, part)
        table = pq.read_table(readable(path), columns=["row", "kept"])
        judged = table.column("row").to_numpy()
        if not np.array_equal(judged, rows):
            raise VerdictError(f"{path} judged {len(judged)} documents where the stages before it kept {len(rows)}: "
                               "its part was judged under other verdicts; run again")
        rows = judged[table.column("kept").to_numpy(zero_copy_only=False)]
    return rows


def verdicts_key(work_root: str | Path, part: Part, stages: Sequence[str]) -> dict:
    """The fingerprints of a part's documents and of the verdicts applied to it: a stage's content key."""
    return {"docs": file_fingerprint(Path(work_root) / part.docs_path),
            **{stage: file_fingerprint(verdicts_path(work_root, stage, part)) for stage in stages}}


def documents(work_root: str | Path, part: Part, rows: np.ndarray, columns: list[str],
              batch_size: int = 1000) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
    """(rows, their documents' columns) of the part's given ascending rows, a Parquet batch at a time: memory is a
    batch, not the part."""
    start, k = 0, 0
    for batch in open_parquet(Path(work_root) / part.docs_path).iter_batches(batch_size=batch_size, columns=columns):
        stop = k + int(np.searchsorted(rows[k:], start + batch.num_rows))
        if stop > k:
            mine = rows[k:stop]
            yield mine, batch if len(mine) == batch.num_rows else batch.take(pa.array(mine - start))
        k, start = stop, start + batch.num_rows


def rejects(work_root: str | Path, stage: str, part: Part) -> pa.Table:
    """The documents of a part that `stage` rejected, as a person reads them (REJECT_SCHEMA): reason, detail and twin
    from the verdicts; source file, line and an excerpt from the part."""
    table = pq.read_table(readable(verdicts_path(work_root, stage, part)))
    table = table.filter(pc.invert(table.column("kept")))
    rows = table.column("row").to_numpy()
    sources, lines, excerpts = [], [], []
    for _, batch in documents(work_root, part, rows, ["source_file", "line", "text"]):
        sources += batch.column("source_file").to_pylist()
        lines += batch.column("line").to_pylist()
        excerpts += [excerpt(t) for t in batch.column("text").to_pylist()]
    n = len(rows)

    def column(name: str, kind: pa.DataType) -> pa.Array:
        return table.column(name).combine_chunks() if name in table.column_names else pa.nulls(n, kind)

    return pa.table({
        "stage": pa.array([stage] * n, pa.string()), "corpus": pa.array([part.corpus] * n, pa.string()),
        "source_file": pa.array(sources, pa.string()), "line": pa.array(lines, pa.int64()),
        "id": column("id", pa.string()), "reason": column("reason", pa.string()),
        "detail": column("detail", pa.string()), "excerpt": pa.array(excerpts, pa.string()),
        "duplicate_of": column("duplicate_of", pa.string()), "similarity": column("similarity", pa.float32())},
        schema=REJECT_SCHEMA)


class VerdictColumn:
    """One column of a stage's verdicts (classify's redacted texts, say), handed out for ascending rows of its part a
    batch at a time: read beside `documents`, so memory is a batch of each, not the part."""

    def __init__(self, work_root: str | Path, stage: str, part: Part, column: str, batch_size: int = 1000):
        self.batches = open_parquet(verdicts_path(work_root, stage, part)).iter_batches(
            batch_size=batch_size, columns=["row", column])
        self.rows = np.zeros(0, np.int64)
        self.values: pa.Array | None = None

    def take(self, rows: np.ndarray) -> pa.Array:
        """The column's values at these rows (each one the stage judged), in their order."""
        while len(rows) and (not len(self.rows) or self.rows[-1] < rows[-1]):
            batch = next(self.batches)
            self.rows = np.concatenate([self.rows, batch.column(0).to_numpy()])
            self.values = batch.column(1) if self.values is None else pa.concat_arrays([self.values, batch.column(1)])
        pos = np.searchsorted(self.rows, rows)
        if len(rows) and not np.array_equal(self.rows[np.minimum(pos, len(self.rows) - 1)], rows):
            raise VerdictError("asked for rows the stage did not judge")
        out = self.values.take(pa.array(pos)) if len(rows) else pa.array([], self._type())
        done = int(pos[-1]) + 1 if len(rows) else 0  # rows are asked in order: what is behind is not asked again
        self.rows, self.values = self.rows[done:], self.values.slice(done) if self.values is not None else None
        return out

    def _type(self) -> pa.DataType:
        return self.values.type if self.values is not None else pa.large_string()

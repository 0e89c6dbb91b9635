"""Ingest on real files from ../shared/corpora: schema, languages, accounting, reuse, determinism."""
import gzip
import hashlib
import shutil

import pyarrow.parquet as pq
import pytest

from curate.schemas.config import IngestConfig
from curate.schemas.documents import DOCUMENT_SCHEMA
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file, part_paths
from tests.conftest import head_lines


def _write_gz(path, lines):
    with gzip.open(path, "wb") as f:
        f.writelines(lines)
    return path


@pytest.fixture()
def multilingual(tmp_path, shared_corpora):
    lines = head_lines(shared_corpora / "multilingual.jsonl.gz", 2400)
    # the shared file is grouped by language: take some of each
    picked = lines[:40] + lines[420:460] + lines[820:860] + lines[1300:1340] + lines[2000:2040]
    return _write_gz(tmp_path / "multi.jsonl.gz", picked)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_real_multilingual_documents_are_kept_with_language_and_provenance(tmp_path, multilingual):
    job = InputFile("multi", str(multilingual), "multi.jsonl.gz")
    res = ingest_file(job, IngestConfig(), tmp_path / "work")
    assert res.docs_in == 200 and res.kept == 200 and res.rejected == 0
    table = pq.read_table(tmp_path / "work" / res.parts[0].docs_path)
    assert table.schema.equals(DOCUMENT_SCHEMA)
    assert {"fr", "de", "es"} <= set(table.column("lang").to_pylist())
    rows = table.to_pylist()
    # the label in the source agrees with language ID on nearly every document
    import orjson
    agree = sum(orjson.loads(r["meta"])["lang"] == r["lang"] for r in rows)
    assert agree / len(rows) > 0.9
    assert all(r["n_chars"] == len(r["text"]) and len(r["content_hash"]) == 32 for r in rows)
    assert rows[0]["source_file"] == "multi.jsonl.gz" and rows[0]["line"] == 1


def test_rerun_reuses_output_and_is_byte_identical(tmp_path, multilingual):
    job = InputFile("multi", str(multilingual), "multi.jsonl.gz")
    cfg = IngestConfig(part_text_bytes=100_000)  # several parts
    first = ingest_file(job, cfg, tmp_path / "a")
    again = ingest_file(job, cfg, tmp_path / "a")
    assert not first.reused and again.reused and again.kept == first.kept and len(first.parts) > 2
    other = ingest_file(job, cfg, tmp_path / "b")
    written = sorted(p.name for p in part_paths(tmp_path / "a", job)[0].parent.iterdir())
    assert written == sorted(p.name for p in part_paths(tmp_path / "b", job)[0].parent.iterdir())
    for name in written:
        if name.endswith(".parquet"):
            a, b = (tmp_path / w / "ingest" / "multi" / name for w in "ab")
            assert _sha(a) == _sha(b), f"{name} differs between two runs on the same input"
    assert not other.reused


def test_a_large_file_is_written_as_parts_of_bounded_text(tmp_path, multilingual):
    """Each part but the last holds at least part_text_bytes of text and at most one more batch's worth; read in
    order, the parts are the documents of one part."""
    job = InputFile("multi", str(multilingual), "multi.jsonl.gz")
    whole = ingest_file(job, IngestConfig(), tmp_path / "one")
    limit = whole.text_bytes // 7
    split = ingest_file(job, IngestConfig(part_text_bytes=limit), tmp_path / "many")
    assert len(whole.parts) == 1 and len(split.parts) in (7, 8)
    texts = [pq.read_table(tmp_path / "many" / p.docs_path, columns=["text", "id"]) for p in split.parts]
    assert [t.num_rows for t in texts] == [p.rows for p in split.parts]
    assert sum(p.rows for p in split.parts) == whole.kept
    sizes = [sum(len(x.encode()) for x in t.column("text").to_pylist()) for t in texts]
    longest = max(len(x.encode()) for t in texts for x in t.column("text").to_pylist())
    assert all(limit <= s < limit + 4 * longest for s in sizes[:-1]), (limit, sizes)
    ids = [i for t in texts for i in t.column("id").to_pylist()]
    assert ids == pq.read_table(tmp_path / "one" / whole.parts[0].docs_path).column("id").to_pylist()
    assert split.model_dump(exclude={"parts", "seconds"}) == whole.model_dump(exclude={"parts", "seconds"})


def test_changed_config_or_input_recomputes(tmp_path, multilingual):
    job = InputFile("multi", str(multilingual), "multi.jsonl.gz")
    ingest_file(job, IngestConfig(), tmp_path / "w")
    assert ingest_file(job, IngestConfig(), tmp_path / "w").reused
    assert not ingest_file(job, IngestConfig(max_doc_bytes=1_999_999), tmp_path / "w").reused
    shutil.copy(multilingual, tmp_path / "copy.jsonl.gz")
    with gzip.open(multilingual, "ab") as f:
        f.write(b'{"id": "new", "text": "Un document de plus, ajout\xc3\xa9 apr\xc3\xa8s coup."}\n')
    res = ingest_file(job, IngestConfig(max_doc_bytes=1_999_999), tmp_path / "w")
    assert not res.reused and res.docs_in == 201


def test_crash_leaves_no_partial_output(tmp_path, multilingual, monkeypatch):
    job = InputFile("multi", str(multilingual), "multi.jsonl.gz")
    import curate.tasks.ingest.ingest as ingest_mod

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-file")

    monkeypatch.setattr(ingest_mod, "identify", boom)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(job, IngestConfig(batch_size=50), tmp_path / "w")
    corpus_dir = tmp_path / "w" / "ingest" / "multi"
    assert not any(corpus_dir.iterdir()), "a crashed file must leave nothing behind"
    monkeypatch.undo()
    res = ingest_file(job, IngestConfig(batch_size=50), tmp_path / "w")
    assert res.kept == 200 and not res.reused


def test_language_allowlist_rejects_with_reason(tmp_path, multilingual):
    job = InputFile("multi", str(multilingual), "multi.jsonl.gz")
    res = ingest_file(job, IngestConfig(lang_allowlist=["fr"]), tmp_path / "w")
    assert res.kept > 0 and res.by_reason["language"] == res.rejected > 0
    assert res.kept + res.rejected == res.docs_in
    langs = set(pq.read_table(tmp_path / "w" / res.parts[0].docs_path).column("lang").to_pylist())
    assert langs == {"fr"}
    rejects = pq.read_table(tmp_path / "w" / res.rejects_path).to_pylist()
    assert all(r["reason"] == "language" and r["excerpt"] and r["id"] for r in rejects)

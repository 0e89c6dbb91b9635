"""Ingest on real files from ../shared/corpora: schema, languages, accounting, reuse, determinism."""
import gzip
import hashlib
import shutil

import pyarrow.parquet as pq
import pytest

from curate.schemas.config import IngestConfig
from curate.schemas.documents import DOCUMENT_SCHEMA
from curate.tasks.ingest import FileJob, ingest_file, part_paths
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
    job = FileJob("multi", str(multilingual), "multi.jsonl.gz")
    res = ingest_file(job, IngestConfig(), tmp_path / "work")
    assert res.docs_in == 200 and res.kept == 200 and res.rejected == 0
    table = pq.read_table(tmp_path / "work" / res.docs_path)
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
    job = FileJob("multi", str(multilingual), "multi.jsonl.gz")
    cfg = IngestConfig()
    first = ingest_file(job, cfg, tmp_path / "a")
    again = ingest_file(job, cfg, tmp_path / "a")
    assert not first.reused and again.reused and again.kept == first.kept
    other = ingest_file(job, cfg, tmp_path / "b")
    for pa_, pb in zip(part_paths(tmp_path / "a", job), part_paths(tmp_path / "b", job)):
        if pa_.suffix == ".parquet":
            assert _sha(pa_) == _sha(pb), f"{pa_.name} differs between two runs on the same input"
    assert not other.reused


def test_changed_config_or_input_recomputes(tmp_path, multilingual):
    job = FileJob("multi", str(multilingual), "multi.jsonl.gz")
    ingest_file(job, IngestConfig(), tmp_path / "w")
    assert ingest_file(job, IngestConfig(), tmp_path / "w").reused
    assert not ingest_file(job, IngestConfig(max_doc_bytes=1_999_999), tmp_path / "w").reused
    shutil.copy(multilingual, tmp_path / "copy.jsonl.gz")
    with gzip.open(multilingual, "ab") as f:
        f.write(b'{"id": "new", "text": "Un document de plus, ajout\xc3\xa9 apr\xc3\xa8s coup."}\n')
    res = ingest_file(job, IngestConfig(max_doc_bytes=1_999_999), tmp_path / "w")
    assert not res.reused and res.docs_in == 201


def test_crash_leaves_no_partial_output(tmp_path, multilingual, monkeypatch):
    job = FileJob("multi", str(multilingual), "multi.jsonl.gz")
    import curate.tasks.ingest as ingest_mod

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
    job = FileJob("multi", str(multilingual), "multi.jsonl.gz")
    res = ingest_file(job, IngestConfig(lang_allowlist=["fr"]), tmp_path / "w")
    assert res.kept > 0 and res.by_reason["language"] == res.rejected > 0
    assert res.kept + res.rejected == res.docs_in
    langs = set(pq.read_table(tmp_path / "w" / res.docs_path).column("lang").to_pylist())
    assert langs == {"fr"}
    rejects = pq.read_table(tmp_path / "w" / res.rejects_path).to_pylist()
    assert all(r["reason"] == "language" and r["excerpt"] and r["id"] for r in rejects)

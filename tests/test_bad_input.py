"""Bad input: a reason per record, never a traceback, nothing lost (docs_in == kept + rejected)."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curate.schemas.config import IngestConfig
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
from curate.tasks.ingest.inputs import InputError, resolve_inputs
from tests.conftest import head_lines

GOOD = [json.dumps({"id": f"d{i}", "text": f"Document number {i} says something useful about rivers."}).encode() + b"\n"
        for i in range(5)]


def ingest(tmp_path, path, **cfg):
    res = ingest_file(InputFile("bad", str(path), path.name), IngestConfig(**cfg), tmp_path / "work")
    assert res.docs_in == res.kept + res.rejected
    rejects = pq.read_table(tmp_path / "work" / res.rejects_path).to_pylist()
    assert len(rejects) == res.rejected
    return res, rejects


def test_each_bad_record_is_rejected_with_its_reason(tmp_path):
    lines = [
        GOOD[0],
        b'{"id": "x1", "text": "unterminated\n',  # malformed JSON
        b'{"id": "x2", "text": "caf\xe9 in latin-1"}\n',  # invalid UTF-8
        b'{"id": "x3", "body": "no text field"}\n',
        b'{"id": "x4", "text": 42}\n',
        b'{"id": "x5", "text": "   \\u200b  "}\n',  # empty after normalisation
        b'["an", "array"]\n',
        b"\n",  # a blank line is not a record
        GOOD[1],
        b'{"text": "A document without an id still gets a stable one from its place."}\n',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(lines))
    res, rejects = ingest(tmp_path, path)
    assert res.docs_in == 9 and res.kept == 3
    got = {(r["line"], r["reason"]) for r in rejects}
    assert got == {(2, "malformed_json"), (3, "invalid_utf8"), (4, "missing_text_field"), (5, "text_not_string"),
                   (6, "empty_text"), (7, "not_an_object")}
    assert all(r["corpus"] == "bad" and r["source_file"] == "mixed.jsonl" for r in rejects)
    assert next(r for r in rejects if r["line"] == 2)["excerpt"].startswith('{"id": "x1"')
    ids = pq.read_table(tmp_path / "work" / res.parts[0].docs_path).column("id").to_pylist()
    assert ids == ["d0", "d1", "bad/mixed.jsonl/10"]


def test_huge_document_is_rejected_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(GOOD[0])
        f.write(b'{"id": "big", "text": "' + b"word " * 400_000 + b'"}\n')
        f.write(GOOD[1])
    res, rejects = ingest(tmp_path, path, max_doc_bytes=100_000)
    assert res.kept == 2 and [r["reason"] for r in rejects] == ["too_large"]
    assert rejects[0]["line"] == 2 and "2000" in rejects[0]["detail"]


def test_truncated_gzip_keeps_records_before_the_break(tmp_path, shared_corpora):
    real = head_lines(shared_corpora / "literature.jsonl.gz", 300)
    full = gzip.compress(b"".join(real))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    res, rejects = ingest(tmp_path, path)
    assert 50 < res.kept < 300
    assert [r["reason"] for r in rejects] == ["truncated_file"]
    assert rejects[0]["line"] == res.kept + 1


def test_binary_file_and_fake_gzip_are_file_level_rejects(tmp_path):
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)) * 64)
    res, rejects = ingest(tmp_path, binary)
    assert res.kept == 0 and [r["reason"] for r in rejects] == ["binary_file"]
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_bytes(b"".join(GOOD))
    res, rejects = ingest(tmp_path, fake)
    assert res.kept == 0 and [r["reason"] for r in rejects] == ["unreadable_file"]
    assert "gzip" in rejects[0]["detail"].lower() or "compressed" in rejects[0]["detail"]


def test_zstd_parquet_and_txt_inputs(tmp_path):
    zst = tmp_path / "docs.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(b"".join(GOOD)))
    res, _ = ingest(tmp_path, zst)
    assert res.kept == 5

    pqf = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"uid": ["a", "b", "c"], "body": ["First text here.", None, "Third text here."],
                             "license": ["MIT"] * 3}), pqf)
    res, rejects = ingest(tmp_path, pqf, text_field="body", id_field="uid")
    assert res.kept == 2 and [(r["line"], r["reason"], r["id"]) for r in rejects] == [(1, "missing_text_field", "b")]
    meta = pq.read_table(tmp_path / "work" / res.parts[0].docs_path).column("meta").to_pylist()
    assert json.loads(meta[0]) == {"license": "MIT"}

    txt = tmp_path / "notes.txt"
    txt.write_text("A plain text document.\n")
    res, _ = ingest(tmp_path, txt)
    assert res.kept == 1


def test_not_parquet_is_a_clear_reject(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")
    res, rejects = ingest(tmp_path, bad)
    assert [r["reason"] for r in rejects] == ["unreadable_file"]


def test_inputs_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(InputError, match="input not found: .*nowhere"):
        resolve_inputs([str(tmp_path / "nowhere")])
    with pytest.raises(InputError, match="no files match"):
        resolve_inputs([str(tmp_path / "*.jsonl")])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("not an input")
    with pytest.raises(InputError, match="no input files"):
        resolve_inputs([str(tmp_path / "empty")])
    (tmp_path / "a.jsonl").write_bytes(GOOD[0])
    with pytest.raises(InputError, match="both named"):
        resolve_inputs([str(tmp_path / "a.jsonl"), f"a={tmp_path / 'a.jsonl'}"])


def test_directory_glob_and_named_corpora(tmp_path):
    d = tmp_path / "books"
    (d / "sub").mkdir(parents=True)
    (d / "one.jsonl").write_bytes(GOOD[0])
    (d / "sub" / "two.jsonl.gz").write_bytes(gzip.compress(GOOD[1]))
    (d / "_READY").write_text("")
    (d / "notes.md").write_text("x")
    [c] = resolve_inputs([str(d)])
    assert c.name == "books" and [j.source_file for j in c.files] == ["one.jsonl", "sub/two.jsonl.gz"]
    assert c.ignored == ["books/_READY: not an input format", "books/notes.md: not an input format"]
    [g] = resolve_inputs([f"novels={d}/**/*.jsonl*"])
    assert g.name == "novels" and len(g.files) == 2

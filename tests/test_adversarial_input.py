"""What an adversarial read of the ingest path found, each now one reject (or a clear error), never a silent loss
or a failed run: cut and corrupt compressed files, unreadable folders, hidden files, links out of the root, deep
or huge JSON, NUL bytes, CR-only and UTF-16 files, a BOM, bad corpus names."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import zstandard

from curate.schemas.config import IngestConfig
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
from curate.tasks.ingest.inputs import InputError, resolve_inputs
from tests.conftest import REPO, head_lines


def ingest(tmp_path, job_or_path, **cfg):
    job = job_or_path if isinstance(job_or_path, InputFile) else InputFile("adv", str(job_or_path), job_or_path.name)
    res = ingest_file(job, IngestConfig(**cfg), tmp_path / "work")
    assert res.docs_in == res.kept + res.rejected
    rejects = pq.read_table(tmp_path / "work" / res.rejects_path).to_pylist()
    docs = pq.read_table(tmp_path / "work" / res.parts[0].docs_path).to_pylist()
    assert len(rejects) == res.rejected and len(docs) == res.kept
    return res, docs, rejects


@pytest.mark.parametrize("codec", ["zst", "gz"])
def test_a_compressed_file_cut_anywhere_keeps_what_came_before_and_says_truncated(tmp_path, shared_corpora, codec):
    lines = head_lines(shared_corpora / "legal.jsonl.gz", 200)
    body = b"".join(lines)
    full = zstandard.ZstdCompressor(level=3).compress(body) if codec == "zst" else gzip.compress(body)
    for cut in (len(full) // 7, len(full) // 2, len(full) - 10):
        path = tmp_path / f"cut{cut}.jsonl.{codec}"
        path.write_bytes(full[:cut])
        res, docs, rejects = ingest(tmp_path, path)
        assert [r["reason"] for r in rejects if r["reason"] == "truncated_file"] == ["truncated_file"], (cut, rejects)
        assert res.kept < 200 and res.docs_in > 0, f"a cut at {cut} of {len(full)} bytes vanished"
        got = [d["id"] for d in docs]
        assert got == [json.loads(x)["id"] for x in lines[: len(got)]], "the records before the cut are kept, in order"


def test_a_corrupt_zstd_file_is_a_corrupt_file_reject(tmp_path, shared_corpora):
    full = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(
        b"".join(head_lines(shared_corpora / "legal.jsonl.gz", 100))))
    full[len(full) // 2] ^= 0xFF
    path = tmp_path / "bad.jsonl.zst"
    path.write_bytes(bytes(full))
    _, _, rejects = ingest(tmp_path, path)
    assert rejects[-1]["reason"] in ("corrupt_file", "truncated_file"), rejects[-1]


def test_one_bad_record_is_one_reject_nul_cr_only_utf16_bom(tmp_path):
    recs = [{"id": f"r{i}", "text": f"Record {i} is about the harbour and its ships."} for i in range(6)]
    lines = [json.dumps(r).encode() for r in recs]
    nul = tmp_path / "nul.jsonl"
    nul.write_bytes(b"\n".join(lines[:3] + [b'{"id": "z", "text": "a\x00b"}'] + lines[3:]) + b"\n")
    res, docs, rejects = ingest(tmp_path, nul)
    assert res.kept == 6 and [r["reason"] for r in rejects] == ["malformed_json"], "a NUL spoils one record"
    cr = tmp_path / "cr.jsonl"
    cr.write_bytes(b"\r".join(lines) + b"\r")
    res, docs, _ = ingest(tmp_path, cr)
    assert res.kept == 6 and [d["id"] for d in docs] == [r["id"] for r in recs]
    for enc in ("utf-16", "utf-16-le", "utf-16-be"):
        u16 = tmp_path / f"{enc}.jsonl"
        u16.write_bytes("\n".join(json.dumps({**r, "text": r["text"] + " é ü"}, ensure_ascii=False) for r in recs)
                        .encode(enc))
        res, docs, rejects = ingest(tmp_path, u16)
        assert res.kept == 6 and not rejects, (enc, rejects)
        assert docs[0]["text"].endswith("é ü")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))
    res, docs, rejects = ingest(tmp_path, bom)
    assert res.kept == 6 and docs[0]["id"] == "r0" and not rejects


def test_deep_and_huge_json_never_fail_the_run_and_big_ids_keep_their_digits(tmp_path):
    deep = {"id": "deep", "text": "A record with metadata nested very deeply indeed.", "m": 0}
    for _ in range(300):
        deep = {"id": "deep", "text": deep["text"], "m": {"x": deep["m"]}}
    deeper = "{" + '"a":{' * 2000 + "}" * 2001
    lines = [json.dumps(deep), '{"id": 18446744073709551617, "text": "The first of two very large ids here."}',
             '{"id": 18446744073709551618, "text": "The second of two very large ids here."}',
             '{"id": "n", "text": "huge number", "size": 123456789012345678901234567890}', deeper]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res, docs, rejects = ingest(tmp_path, path)
    ids = [d["id"] for d in docs]
    assert "18446744073709551617" in ids and "18446744073709551618" in ids
    assert json.loads(next(d for d in docs if d["id"] == "n")["meta"])["size"] == 123456789012345678901234567890
    assert res.docs_in == 5 and len(rejects) + len(docs) == 5
    assert {r["reason"] for r in rejects} <= {"malformed_json", "bad_metadata"}


def test_hidden_files_are_listed_and_links_out_of_the_root_are_rejected(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_text('{"id": "a", "text": "A plain document about tides and the moon."}\n')
    (root / ".hidden.jsonl").write_text('{"id": "h", "text": "hidden"}\n')
    (root / ".git").mkdir()
    (root / ".git" / "x.jsonl").write_text("{}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "passwd.txt").symlink_to(secret)
    (root / "inside.jsonl").symlink_to(root / "a.jsonl")
    [c] = resolve_inputs([str(root)])
    assert "corpus/.hidden.jsonl: a hidden file" in c.ignored and "corpus/.git: a hidden folder" in c.ignored
    refused = [j for j in c.files if j.refused]
    assert [j.source_file for j in refused] == ["passwd.txt"]
    res, docs, rejects = ingest(tmp_path, refused[0])
    assert res.kept == 0 and rejects[0]["reason"] == "symlink_outside_root" and "root:x" not in json.dumps(rejects)
    assert sorted(j.source_file for j in c.files if not j.refused) == ["a.jsonl", "inside.jsonl"]


@pytest.mark.skipif(not shutil.which("setpriv") and os.geteuid() == 0, reason="needs setpriv to drop root")
def test_an_unreadable_folder_is_a_reject_not_a_skip():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:  # under /tmp: pytest's own folder is closed to other users
        os.chmod(tmp, 0o755)
        _unreadable_folder(Path(tmp))


def _unreadable_folder(tmp_path):
    root = tmp_path / "corpus"
    (root / "locked").mkdir(parents=True)
    (root / "ok.jsonl").write_text('{"id": "a", "text": "A readable document about rivers."}\n')
    (root / "locked" / "b.jsonl").write_text('{"id": "b", "text": "unseen"}\n')
    os.chmod(root / "locked", 0)
    for d in (root, root / "ok.jsonl"):
        os.chmod(d, 0o755)
    code = ("import json; from tasks.ingest.inputs import resolve_inputs; [c] = resolve_inputs([%r]); "
            "print(json.dumps([[j.source_file, j.refused] for j in c.files]))" % str(root))
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    try:
        out = subprocess.run(drop + [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.chmod(root / "locked", 0o755)
    assert out.returncode == 0, out.stderr
    jobs = dict(json.loads(out.stdout))
    assert jobs["ok.jsonl"] is None
    assert jobs["locked"][0] == "unreadable_file" and "cannot list folder" in jobs["locked"][1]


def test_corpus_names_that_would_break_paths_are_refused_up_front(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"id": "a", "text": "x y z"}\n')
    with pytest.raises(InputError, match="1 to 100"):
        resolve_inputs([f"{'n' * 300}={f}"])
    for name in ("index", "sigs"):
        with pytest.raises(InputError, match="reserved"):
            resolve_inputs([f"{name}={f}"])

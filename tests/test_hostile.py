"""Hostile input and hostile storage: names from data never lead out of their root, a malformed WARC record is one
reject and reading goes on, compression bombs and deeply nested pages are rejects in bounded memory and time, a FIFO
or a loop of links never hangs or kills a run, and a file copied over the work root's tokenizer or dedup index is
refused."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.schemas.config import IngestConfig
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file


def _ingest(tmp: Path, path: Path, **cfg):
    res = ingest_file(InputFile("adv", str(path), path.name), IngestConfig(**cfg), tmp / "work")
    assert res.docs_in == res.kept + res.rejected, res
    return res


# --- names from data ---------------------------------------------------------------------------------------------

def test_a_name_from_data_never_leads_out_of_its_root(tmp_path):
    from curate.tasks.engine.storage import StorageError, inside

    assert inside(tmp_path, "a/b.parquet", "key") == (tmp_path / "a" / "b.parquet").resolve()
    for rel in ("../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(StorageError, match="leads out of|refused"):
            inside(tmp_path, rel, "the object key s3://b/in/" + rel)


def test_an_object_key_with_dot_dot_segments_is_refused_by_a_spool(tmp_path):
    """An object store holds keys, not paths: `in/../../../x` is a valid key, which a local copy once wrote twelve
    levels up. (memory:// is fsspec's in-process object store: the same code as s3://.)"""
    import fsspec

    from curate.tasks.engine.spool import Spool
    from curate.tasks.engine.storage import StorageError

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/wr/ingest/c/_corpus.json", b"{}")
    fs.pipe("/bucket/wr/ingest/c/../../../../escape/_corpus.json", b"{}")
    spool = Spool("memory://bucket/wr", tmp_path / "a" / "b" / "spool", revalidate=False)
    with pytest.raises(StorageError, match="leads out of"):
        spool.listing("ingest", "*/_corpus.json")
    with pytest.raises(StorageError, match="leads out of"):
        spool.fetch("ingest/c/../../../../escape/_corpus.json")
    assert not list(tmp_path.rglob("escape"))


def test_a_manifest_cannot_send_its_fetch_out_of_the_cache(tmp_path, monkeypatch):
    import fsspec

    from curate.tasks.engine.storage import StorageError, fetch_manifest

    from curate.schemas.manifest import Budget, ShardRef, Source, TokenizerRef
    from curate.tasks.train.manifests import exports_of

    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    fs.pipe("/root1/x.model", b"model")
    sources = [Source(domain="d", weight=1.0, available_tokens=10, available_docs=1, target_tokens=10, epochs=1.0,
                      max_epochs=4, shards=[ShardRef(path="tokens/d.arrow", docs=1, tokens=10, bytes=3,
                                                     sha256=hashlib.sha256(b"abc").hexdigest())])]
    body = {"id": "m", "name": "default", "version": 1, "created_at": "2026-01-01T00:00:00Z",
            "producer": {"package_version": "0", "config_sha256": "x"},
            "tokenizer": TokenizerRef(path="../../../../../x", sha256="0" * 64, vocab_size=10, eos_id=1,
                                      token_dtype="uint16").model_dump(),
            "budget": Budget(total_tokens=10, sequence_length=4, seed=0).model_dump(),
            "sources": [s.model_dump() for s in sources], "weights_provenance": {"method": "manual"},
            "fingerprint": "0" * 64, "exports": exports_of(sources).model_dump()}
    fs.pipe("/root1/tokens/d.arrow", b"abc")
    fs.pipe("/root1/manifests/default/v0001.json", json.dumps(body).encode())
    with pytest.raises(StorageError, match="its tokenizer path: '../../../../../x' leads out of"):
        fetch_manifest("memory://root1/manifests/default")
    assert not list(tmp_path.rglob("x"))


# --- malformed WARC records --------------------------------------------------------------------------------------

def _record(uri: str, words: str, clen=None, ver="WARC/1.0", crlf="\r\n", extra="", ctype="text/html") -> bytes:
    body = ("<html><body><p>" + f"{words} " * 40 + "</p></body></html>").encode()
    http = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n\r\n".encode() + body
    head = crlf.join([ver, "WARC-Type: response", f"WARC-Target-URI: {uri}", "WARC-Date: 2025-01-01T00:00:00Z",
                      f"WARC-Record-ID: <urn:uuid:{abs(hash(uri + words))}>",
                      "Content-Type: application/http; msgtype=response",
                      f"Content-Length: {clen if clen is not None else len(http)}" + extra, "", ""]).encode()
    return head + http + b"\r\n\r\n"


BAD = {
    "non-numeric length": dict(clen="abc"), "negative length": dict(clen="-5"),
    "length past the end": dict(clen="2147483648"), "unknown version": dict(ver="WARC/9.9"),
    "LF-only header": dict(crlf="\n"), "a 1 MB header": dict(extra="\r\nX-Big: " + "x" * (1 << 20)),
    "charset undefined": dict(ctype="text/html; charset=undefined"),
    "charset utf-16 on UTF-8 bytes": dict(ctype="text/html; charset=utf-16"),
    "an unparsable URI": dict(uri="http://[::1"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["warc", "warc.gz"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_malformed_warc_record_is_one_reject_and_reading_goes_on(tmp_path, case, gz):
    good = [_record(f"http://good/{i}", f"tide{i} harbour river boats fishing nets morning") for i in range(3)]
    kw = dict(BAD[case])
    bad = _record(kw.pop("uri", "http://bad/"), "lighthouse keepers and their fog signals", **kw)
    records = [good[0], bad, good[1], good[2]]
    path = tmp_path / f"crawl.warc{'.gz' if gz else ''}"
    path.write_bytes(b"".join(gzip.compress(r) if gz else r for r in records))
    res = _ingest(tmp_path, path)
    assert res.docs_in == 4, (case, res)
    kept = {r["url"] for r in __import__("pyarrow.parquet", fromlist=["x"]).read_table(
        tmp_path / "work" / res.parts[0].docs_path, columns=["url"]).to_pylist()}
    assert {"http://good/0", "http://good/1", "http://good/2"} <= kept, (case, res.by_reason)
    if "charset" not in case:
        assert res.rejected == 1, (case, res.by_reason)


def test_a_damaged_gzip_member_and_padding_after_the_last_lose_only_that_record(tmp_path):
    members = [gzip.compress(_record(f"http://good/{i}", f"words of page {i} about the sea")) for i in range(3)]
    broken = bytearray(members[1])
    broken[len(broken) // 2] ^= 0xFF
    path = tmp_path / "crawl.warc.gz"
    path.write_bytes(members[0] + bytes(broken) + members[2] + b"\0\0padding")
    res = _ingest(tmp_path, path)
    assert (res.docs_in, res.kept, res.by_reason) == (3, 2, {"malformed_record": 1})


# --- bombs, depth ------------------------------------------------------------------------------------------------

def _peak_mb_of(code: str) -> tuple[float, str]:
    """Run `code` in a fresh interpreter; (its peak RSS in MB, its last stdout line)."""
    wrapped = f"import resource, sys\n{code}\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=300, check=True)
    lines = out.stdout.strip().splitlines()
    return float(lines[-1]), "\n".join(lines[:-1])


def test_compression_bombs_are_rejects_in_bounded_memory(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    zst = tmp_path / "bomb.jsonl.zst"  # about 40 KB that expand to 1 GiB
    with open(zst, "wb") as f, zstandard.ZstdCompressor(level=19).stream_writer(f) as w:
        for _ in range(64):
            w.write(b"\n" * (1 << 24))
    gz = tmp_path / "newlines.jsonl.gz"  # gzip of nothing but newlines (deflate's own ratio, 1030 to 1)
    with gzip.open(gz, "wb") as f:
        for _ in range(8):
            f.write(b"\n" * (1 << 24))
    par = tmp_path / "dictionary.parquet"  # a dictionary of one 1 MB string, 400 rows naming it
    pq.write_table(pa.table({"id": [str(i) for i in range(400)], "text": pa.DictionaryArray.from_arrays(
        pa.array([0] * 400, pa.int32()), pa.array(["word " * (1 << 18)]))}), par, compression="zstd")
    small = tmp_path / "dictionary-small-rows.parquet"  # rows under max_doc_bytes, 2,000 of them naming one string
    pq.write_table(pa.table({"id": [str(i) for i in range(2000)], "text": pa.DictionaryArray.from_arrays(
        pa.array([0] * 2000, pa.int32()), pa.array(["word " * (1 << 14)]))}), small, compression="zstd")
    for path, reason in ((zst, "too_large"), (gz, "too_large"), (par, "too_large"), (small, "too_large")):
        t0 = time.perf_counter()
        peak, out = _peak_mb_of(
            "from pathlib import Path\nfrom curate.schemas.config import IngestConfig\n"
            "from curate.schemas.inputs import InputFile\nfrom curate.tasks.ingest.ingest import ingest_file\n"
            f"r = ingest_file(InputFile('b', {str(path)!r}, {path.name!r}), IngestConfig(max_doc_bytes=100_000), "
            f"{str(tmp_path / ('w-' + path.name))!r})\nprint(r.docs_in, r.kept, r.rejected, sorted(r.by_reason))")
        docs_in, kept, rejected, reasons = out.split(" ", 3)
        assert int(docs_in) == int(kept) + int(rejected) and reason in reasons, (path.name, out)
        assert peak < 900 and time.perf_counter() - t0 < 120, (path.name, peak)


def test_a_page_nested_deeper_than_extraction_can_take_is_a_reject_in_seconds(tmp_path):
    """50,000 nested elements: extraction time grows with the depth's square (10,000: 3.6 s; this: minutes). The
    time limit makes it a `timeout` reject (here under a 2 s limit), and the page before it is kept."""
    deep = ("<html><body>" + "<div>" * 50_000 + "text" + "</div>" * 50_000 + "</body></html>").encode()
    path = tmp_path / "deep.warc"
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + deep
    path.write_bytes(_record("http://good/0", "a normal page about ships at sea") + (
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://deep/\r\nWARC-Date: 2025-01-01T00:00:00Z\r\n"
        "WARC-Record-ID: <urn:uuid:deep>\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {len(http)}\r\n\r\n").encode() + http + b"\r\n\r\n")
    t0 = time.perf_counter()
    res = _ingest(tmp_path, path, web={"extract_timeout_s": 2})
    assert time.perf_counter() - t0 < 30 and res.kept == 1 and res.by_reason == {"timeout": 1}, res


def test_a_page_whose_extraction_runs_past_the_limit_is_a_timeout_reject_and_the_next_page_is_read(tmp_path):
    """The limit is wall-clock, whatever makes a page slow: here a 16 MB page (about 3 s of extraction) under a
    limit of 0.5 s; the extractor's process is replaced and the pages after it are kept. No process is left."""
    import psutil

    slow = ("<html><body>" + "<p>Plain words of a long page, one paragraph after another.</p>" * 250_000
            + "</body></html>").encode()
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + slow
    path = tmp_path / "slow.warc"
    path.write_bytes(_record("http://good/0", "a normal page about ships at sea") + (
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://slow/\r\nWARC-Date: 2025-01-01T00:00:00Z\r\n"
        "WARC-Record-ID: <urn:uuid:slow>\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {len(http)}\r\n\r\n").encode() + http + b"\r\n\r\n"
        + _record("http://good/1", "a second page about lighthouses and tides"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # earlier tests' pools are not this one's
    res = _ingest(tmp_path, path, max_doc_bytes=32_000_000, web={"extract_timeout_s": 0.5})
    assert res.kept == 2 and res.by_reason == {"timeout": 1}, res
    assert not [p for p in psutil.Process().children(recursive=True) if p.pid not in before]


# --- files that are not files ------------------------------------------------------------------------------------

def test_a_fifo_and_a_loop_of_links_in_an_input_folder_are_rejects_not_a_hang(tmp_path):
    from curate.tasks.ingest.inputs import resolve_inputs

    root = tmp_path / "corpus"
    root.mkdir()
    (root / "ok.jsonl").write_text('{"id": "a", "text": "a readable document about rivers"}\n')
    os.mkfifo(root / "pipe.jsonl")
    (root / "loop.jsonl").symlink_to(root / "loop2.jsonl")
    (root / "loop2.jsonl").symlink_to(root / "loop.jsonl")
    [corpus] = resolve_inputs([str(root)])
    why = {f.source_file: f.refused for f in corpus.files}
    assert why["ok.jsonl"] is None and "not a regular file" in why["pipe.jsonl"][1]
    assert "cannot be followed" in why["loop.jsonl"][1]
    results = [ingest_file(f, IngestConfig(), tmp_path / "work") for f in corpus.files]  # (a FIFO opened would block)
    assert sum(r.kept for r in results) == 1 and sum(r.rejected for r in results) == 3
    assert [reason for r in results for reason in r.by_reason] == ["unreadable_file"] * 3


def test_a_landed_link_out_of_the_landing_folder_is_refused(tmp_path):
    from curate.tasks.ingest.landing import scan_landing

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.jsonl").write_text('{"text": "x"}\n')
    (elsewhere / "_READY").write_text("")
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "x").symlink_to(elsewhere)
    [c] = scan_landing(landing)
    assert not c.ready and "leads out of" in c.invalid


# --- verified work-root files ------------------------------------------------------------------------------------

def test_a_tokenizer_copied_over_the_work_roots_is_refused(tmp_path):
    from curate.tasks.tokens.tokenizer import TokenizerError, TokenizerInfo, verified

    (tmp_path / "settings.json").write_text(json.dumps({"sha256": "a" * 64}))
    with pytest.raises(TokenizerError, match="not the tokenizer this work root trained"):
        verified(tmp_path, TokenizerInfo(str(tmp_path / "tokenizer.model"), "b" * 64, 1000, 2))
    assert verified(tmp_path, TokenizerInfo(str(tmp_path / "tokenizer.model"), "a" * 64, 1000, 2))


def test_commit_points_are_pushed_after_the_outputs_they_name():
    """A push cut after the dedup registry, before the outputs it names, once wedged the work root for every machine."""
    from curate.tasks.engine.spool import _push_order

    files = ["dedup/index/registry.json", "dedup/index/bands/band=00/c.parquet", "dedup/c/c.jsonl.gz-ab.00000."
             "verdicts.parquet", "ingest/c/_corpus.json", "ingest/c/c.jsonl.gz-ab.00000.docs.parquet",
             "ingest/c/c.jsonl.gz-ab.0123.done.json", "tokens/code/train/c/x.arrow", "tokenize/c/x.0123.done.json",
             "tokenize/c/_corpus.json", "manifests/default/v0001.json", "manifests/default/latest.json", "report.json"]
    order = sorted(files, key=lambda r: (_push_order(r), r))
    for marker in ("dedup/index/registry.json", "ingest/c/_corpus.json", "tokenize/c/x.0123.done.json",
                   "tokenize/c/_corpus.json"):
        assert all(order.index(data) < order.index(marker) for data in files if _push_order(data) == 0)
    assert order[-2:] == ["manifests/default/latest.json", "report.json"]


def test_a_full_disk_and_the_other_refusals_are_one_line():
    import errno

    from curate.flows.cli.run import refusal
    from curate.tasks.dedup.index import DedupIndexError
    from curate.tasks.engine.storage import WorkRootBusy

    assert refusal(OSError(errno.ENOSPC, "No space left on device", "/w/x.parquet")).startswith("the disk is full")
    assert refusal(DedupIndexError("held")) == "held" and refusal(WorkRootBusy("busy")) == "busy"
    assert refusal(KeyError("a bug")) is None, "a bug keeps its traceback"


def test_a_run_that_lost_its_lease_pushes_nothing_and_a_published_tokenizer_is_never_replaced(tmp_path):
    """A second run that took an expired lease once pushed its tokenizer over the published one."""
    import fsspec

    from curate.tasks.engine.spool import Spool
    from curate.tasks.engine.storage import LEASE, Lease, StorageError, WorkRootBusy

    fs = fsspec.filesystem("memory")
    fs.pipe("/wr1/tokenizer/tokenizer.model", b"the published model")
    lease = Lease("memory://wr1", ttl_s=3600)
    lease.acquire()
    local = tmp_path / "copy"
    (local / "tokenizer").mkdir(parents=True)
    (local / "tokenizer" / "tokenizer.model").write_bytes(b"another model")
    (local / "tokens").mkdir()
    (local / "tokens" / "a.arrow").write_bytes(b"shard")
    spool = Spool("memory://wr1", local, revalidate=True)
    fs.pipe(f"/wr1/{LEASE}", json.dumps({"holder": "another run", "expires": time.time() + 60}).encode())
    with pytest.raises(WorkRootBusy, match="lease was lost to another run"):
        spool.push(lease)
    assert not fs.exists("/wr1/tokens/a.arrow"), "nothing pushed"
    fs.rm(f"/wr1/{LEASE}")
    lease.acquire()
    with pytest.raises(StorageError, match="tokenizer.model exists with other content"):
        spool.push(lease)
    assert fs.cat("/wr1/tokenizer/tokenizer.model") == b"the published model"

"""The spool a task or the flow reads and writes a work root on object storage through (tasks/engine/spool.py), on
fsspec's in-process object store (memory://: the same code as s3://): what it fetches, keeps, sends and lists."""
import contextlib
import json

import fsspec
import pytest

from curate.tasks.engine import spool as spool_module
from curate.tasks.engine.spool import Spool, job_spool, listed, present, readable, stored_fingerprint
from curate.tasks.engine.storage import StorageError


@pytest.fixture
def store():
    fs = fsspec.filesystem("memory")
    for k in range(3):
        fs.pipe(f"/wr/ingest/c/p{k}.docs.parquet", bytes([k]) * 1000)
    yield fs
    fs.rm("/wr", recursive=True)


def test_a_file_is_fetched_when_first_read_and_the_oldest_fetched_go_past_the_limit(store, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_SPOOL_BYTES", "2500")
    spool = Spool("memory://wr", tmp_path, revalidate=False)
    for k in range(3):
        spool.fetch(f"ingest/c/p{k}.docs.parquet")
    assert sorted(p.name for p in tmp_path.rglob("*.parquet")) == ["p1.docs.parquet", "p2.docs.parquet"]
    spool.fetch("ingest/c/p0.docs.parquet")  # read again: fetched again, and p1 goes
    assert (tmp_path / "ingest/c/p0.docs.parquet").read_bytes() == bytes([0]) * 1000
    assert not (tmp_path / "ingest/c/p1.docs.parquet").exists()
    assert spool.unsent() == []  # what was fetched is never sent back


def test_a_task_sends_what_it_wrote_in_commit_order_and_leaves_no_spool(store, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_SPOOL", str(tmp_path))
    with job_spool("memory://wr") as spool:
        assert readable(spool.local / "ingest/c/p1.docs.parquet").read_bytes() == bytes([1]) * 1000
        assert present(spool.local / "ingest/c/p2.docs.parquet") and not present(spool.local / "nothing/here")
        assert stored_fingerprint(spool.local / "ingest/c/p2.docs.parquet")  # (read from the store, not fetched)
        assert not (spool.local / "ingest/c/p2.docs.parquet").exists()
        (spool.local / "classify/c").mkdir(parents=True)
        (spool.local / "classify/c/p1.k1.done.json").write_text(RECORD)
        (spool.local / "classify/c/p1.verdicts.parquet").write_bytes(b"v")
        assert [p.name for p in listed(spool.local / "classify", "*/*.json")] == ["p1.k1.done.json"]
        assert spool.unsent() and sorted(spool.unsent())[0] == "classify/c/p1.k1.done.json"
        order = []
        real_put, real_create = spool._put, spool_module._create
        monkeypatch.setattr(spool, "_put", lambda rel, target: (order.append(rel), real_put(rel, target)))
        monkeypatch.setattr(spool_module, "_create", lambda fs, src, target, url: (
            order.append(target.removeprefix("/wr/")), real_create(fs, src, target, url)))
    assert order == ["classify/c/p1.verdicts.parquet", "classify/c/p1.k1.done.json"]  # the output before its record
    assert store.cat("/wr/classify/c/p1.k1.done.json") == RECORD.encode()
    assert not list(tmp_path.glob("curate-task-*"))  # deleted when the task is done


RECORD = json.dumps({"key": {"k": 1}, "result": {"seconds": 1.0}, "outputs": {"classify/c/p1.verdicts.parquet": "x"}})


@pytest.mark.parametrize("other,taken", [({"result": {"seconds": 2.0}}, True), ({"outputs": {}}, False)])
def test_a_record_is_created_once_and_never_replaced(store, tmp_path, monkeypatch, other, taken):
    """A job's record is created with a conditional write: the same job run twice (its key and outputs the same, its
    timing not) finds its record there; a record naming other outputs is never written over."""
    store.pipe("/wr/classify/c/p1.k1.done.json", RECORD.encode())
    monkeypatch.setenv("CURATE_SPOOL", str(tmp_path))
    with pytest.raises(StorageError, match="never replaced") if not taken else contextlib.nullcontext():
        with job_spool("memory://wr") as spool:
            (spool.local / "classify/c").mkdir(parents=True)
            (spool.local / "classify/c/p1.k1.done.json").write_text(json.dumps({**json.loads(RECORD), **other}))
    assert store.cat("/wr/classify/c/p1.k1.done.json") == RECORD.encode()


@pytest.mark.server
def test_a_pointer_is_written_back_only_over_the_generation_it_was_read_at(tmp_path, monkeypatch):
    """The dedup registry and a manifest folder's latest are read, changed and written back: on S3 the write is
    conditional on the ETag read (If-Match), so a writer that another wrote after is refused, not a lost update."""
    import s3fs

    from tests.conftest import moto_s3

    with moto_s3() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        rel = "dedup/index/registry.json"
        fs.pipe(f"curate/wr/{rel}", b'{"corpora": []}')
        late = Spool("s3://curate/wr", tmp_path / "late", revalidate=False)
        late.fetch(rel)
        (late.local / rel).write_text('{"corpora": ["late"]}')
        fs.pipe(f"curate/wr/{rel}", b'{"corpora": ["other"]}')  # another writer, after `late` read it
        with pytest.raises(StorageError, match="another writer after this one read it"):
            late.push()
        assert fs.cat(f"curate/wr/{rel}") == b'{"corpora": ["other"]}'
        on_time = Spool("s3://curate/wr", tmp_path / "on-time", revalidate=False)
        on_time.fetch(rel)
        (on_time.local / rel).write_text('{"corpora": ["other", "on time"]}')
        assert on_time.push() == [rel] and fs.cat(f"curate/wr/{rel}") == b'{"corpora": ["other", "on time"]}'
        blind = Spool("s3://curate/wr", tmp_path / "blind", revalidate=False)  # wrote it without reading it
        (blind.local / "manifests/m").mkdir(parents=True)
        (blind.local / "manifests/m/latest.json").write_text("{}")
        assert blind.push() == ["manifests/m/latest.json"]  # none there: created
        (blind.local / "manifests/m/latest.json").write_text('{"v": 2}')
        blind.seen.clear()
        blind.generation.clear()
        with pytest.raises(StorageError, match="another writer"):
            blind.push()
    s3fs.S3FileSystem.clear_instance_cache()

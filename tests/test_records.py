"""A job's record (tasks/engine/stage.Step, engine/files.create_record): the commit point of a job, named by its
content key and created once, naming each output with its sha256; reuse trusts a record only while every output it
names has those bytes. The same code on a local disk and on an object store (fsspec's memory://, as s3://)."""
import contextlib
import hashlib
import json
from pathlib import Path

import fsspec
import pytest
from pydantic import BaseModel

from curate.tasks.engine.files import key_digest
from curate.tasks.engine.stage import Job, Step

CALLS: list[str] = []


class Made(BaseModel):
    path: str
    reused: bool = False


def _make(job: Job, key: dict) -> Made:
    CALLS.append(job.settings)
    out = job.root / "toy" / f"{job.unit}.bin"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(job.settings.encode() * 100)
    return Made(path=f"toy/{job.unit}.bin")


TOY = Step("toy", __name__, Made, _make, key=lambda job: {"settings": job.settings},
           record=lambda job: job.root / "toy" / f"{job.unit}.done.json",
           outputs=lambda res, root: [root / res.path])


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path, monkeypatch):
    """(the work root as a job names it, a function reading a file of it as bytes, its file names under toy/)"""
    CALLS.clear()
    if request.param == "local":
        yield str(tmp_path), lambda rel: (tmp_path / rel).read_bytes(), lambda: sorted(
            p.name for p in (tmp_path / "toy").iterdir())
        return
    monkeypatch.setenv("CURATE_SPOOL", str(tmp_path))
    fs = fsspec.filesystem("memory")
    yield "memory://records", lambda rel: fs.cat(f"/records/{rel}"), lambda: sorted(
        p.rsplit("/", 1)[1] for p in fs.ls("/records/toy", detail=False))
    fs.rm("/records", recursive=True)


def test_a_record_is_named_by_its_key_and_names_its_outputs_sha256(root):
    url, read, names = root
    first = TOY.run(Job("p1", "a", url))
    assert not first.reused and CALLS == ["a"]
    record = f"toy/p1.{key_digest({'settings': 'a'})}.done.json"
    assert names() == sorted(["p1.bin", Path(record).name])
    done = json.loads(read(record))
    assert done["key"] == {"settings": "a"} and done["result"]["path"] == "toy/p1.bin"
    assert done["outputs"]["toy/p1.bin"]["sha256"] == hashlib.sha256(b"a" * 100).hexdigest()
    assert TOY.run(Job("p1", "a", url)).reused and CALLS == ["a"]  # the same key: reused, nothing computed


def test_a_job_redone_under_another_key_gets_a_record_of_its_own(root):
    url, read, names = root
    TOY.run(Job("p1", "a", url))
    record_a = f"toy/p1.{key_digest({'settings': 'a'})}.done.json"
    before = read(record_a)
    TOY.run(Job("p1", "b", url))  # other settings: the output is made again under another key
    assert len([n for n in names() if n.endswith(".done.json")]) == 2 and read(record_a) == before
    again = TOY.run(Job("p1", "a", url))  # back: record a names bytes the output no longer has, so it is made again
    assert not again.reused and CALLS == ["a", "b", "a"] and read(record_a) == before
    assert TOY.run(Job("p1", "a", url)).reused


def test_an_output_changed_after_its_record_is_made_again(root, tmp_path):
    url, read, names = root
    TOY.run(Job("p1", "a", url))
    if url.startswith("memory://"):
        fsspec.filesystem("memory").pipe("/records/toy/p1.bin", b"tampered")
    else:
        (tmp_path / "toy/p1.bin").write_bytes(b"tampered")
    assert not TOY.run(Job("p1", "a", url)).reused and read("toy/p1.bin") == b"a" * 100


def test_a_record_of_the_earlier_layout_is_reused_under_its_key(tmp_path):
    """A work root curated before records were named by their key is not curated again."""
    CALLS.clear()
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy/p1.bin").write_bytes(b"a" * 100)
    (tmp_path / "toy/p1.done.json").write_text(json.dumps({"key": {"settings": "a"}, "result": {"path": "toy/p1.bin"}}))
    assert TOY.run(Job("p1", "a", str(tmp_path))).reused and CALLS == []
    assert not TOY.run(Job("p1", "b", str(tmp_path))).reused and CALLS == ["b"]


def test_the_flow_looks_up_only_the_jobs_that_have_a_record(root):
    """A job with no record under any key is sent as it is (its task computes its key where it runs, reading its
    inputs there); one with a record is reused without a task."""
    from curate.tasks.engine.stage import _looked_up
    from curate.tasks.engine.spool import flow_spool

    url, _, _ = root
    TOY.run(Job("p1", "a", url))
    with flow_spool(url) if url.startswith("memory://") else contextlib.nullcontext():
        jobs, results = _looked_up(TOY, [Job("p1", "a", url), Job("p2", "a", url)])
    assert results[0].reused and results[1] is None
    assert jobs[0].key == {"settings": "a"} and jobs[1].key is None

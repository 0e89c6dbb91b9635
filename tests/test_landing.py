"""The landing directory and catalog: readiness, fingerprints, what a watch triggers and refuses."""
import shutil

import pytest

from curate.tasks.ingest.landing import READY_MARKER, Catalog, LandingError, check_unchanged, plan_watch, scan_landing
from tests.conftest import SAMPLE


def land(landing, name, files=("legal.jsonl.gz",), ready=True):
    d = landing / name
    d.mkdir(parents=True)
    for f in files:
        shutil.copy(SAMPLE / f, d / f)
    if ready:
        (d / READY_MARKER).write_text("")
    return d


def test_only_ready_new_corpora_are_triggered_and_a_second_watch_triggers_nothing(tmp_path):
    landing = tmp_path / "landing"
    land(landing, "contracts")
    land(landing, "half-copied", ready=False)
    catalog = Catalog(tmp_path / "work")
    first = plan_watch(scan_landing(landing), catalog.entries())
    assert [c.name for c in first.trigger] == ["contracts"] and first.trigger[0].files == 1
    assert ("half-copied", f"no {READY_MARKER} marker yet") in first.skipped
    catalog.record("contracts", fingerprint=first.trigger[0].fingerprint, status="triggered", flow_run_id="r1")
    second = plan_watch(scan_landing(landing), catalog.entries())
    assert not second.trigger and not second.retry and not second.refused
    assert plan_watch(scan_landing(landing), catalog.entries(), failed_runs={"r1"}).retry[0].name == "contracts"


def test_a_corpus_changed_after_fingerprinting_is_refused(tmp_path):
    landing = tmp_path / "landing"
    d = land(landing, "contracts")
    c = scan_landing(landing)[0]
    catalog = Catalog(tmp_path / "work")
    catalog.record("contracts", fingerprint=c.fingerprint, status="done")
    check_unchanged(d, c.fingerprint)
    shutil.copy(SAMPLE / "code.jsonl.gz", d / "more.jsonl.gz")
    with pytest.raises(LandingError, match="changed after it was fingerprinted"):
        check_unchanged(d, c.fingerprint)
    plan = plan_watch(scan_landing(landing), catalog.entries())
    assert plan.refused and "changed after it was fingerprinted" in plan.refused[0][1]


def test_a_missing_landing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(LandingError, match="does not exist"):
        scan_landing(tmp_path / "nowhere")


def test_one_bad_landing_folder_is_refused_alone_and_links_out_are_not_read(tmp_path):
    landing = tmp_path / "landing"
    land(landing, "good")
    land(landing, "bad name!")
    land(landing, "index")
    secret = tmp_path / "passwd.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    linked = land(landing, "linked")
    (linked / "passwd.txt").symlink_to(secret)
    plan = plan_watch(scan_landing(landing), {})
    assert sorted(c.name for c in plan.trigger) == ["good", "linked"]
    assert {n for n, _ in plan.refused} == {"bad name!", "index"}
    before = next(c for c in plan.trigger if c.name == "linked").fingerprint
    secret.write_text("changed, but never read\n")
    assert next(c for c in scan_landing(landing) if c.name == "linked").fingerprint == before
    from curate.tasks.ingest.inputs import resolve_inputs

    [corpus] = resolve_inputs([str(linked)])
    assert [j.refused[0] for j in corpus.files if j.refused] == ["symlink_outside_root"]


def _second_watch(work_root: str) -> bool:
    with Catalog(work_root).watching() as alone:
        return alone


def _held_by_a_process(work_root) -> "subprocess.Popen":
    """Another process that holds the watch (a watch run on the worker) until it is killed."""
    import subprocess
    import sys

    code = ("import sys, time\nfrom curate.tasks.ingest.landing import Catalog\n"
            "with Catalog(sys.argv[1]).watching() as alone:\n    print(alone, flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(work_root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_one_watch_at_a_time_and_a_killed_one_frees_it_at_once(tmp_path):
    """A watch that comes while another runs is told so at once (it does nothing), rather than waiting behind it: on a
    loaded machine waiting watches piled up and kept the backfills from recording. A killed watch frees it."""
    work = tmp_path / "work"
    with Catalog(work).watching() as first:
        assert first and not _second_watch(work)
        with Catalog(work).locked():  # the catalog itself stays free for the backfills' records
            pass
    assert _second_watch(work), "freed when the watch ended"
    proc = _held_by_a_process(work)
    assert not _second_watch(work)
    proc.kill()
    proc.wait()
    assert _second_watch(work), "a killed watch's lock goes with its process"


def test_one_watch_at_a_time_on_object_storage(tmp_path, monkeypatch):
    import s3fs

    from tests.conftest import moto_s3

    with moto_s3() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        with Catalog("s3://curate/wr").watching() as first:
            assert first and not _second_watch("s3://curate/wr")
            assert s3fs.S3FileSystem().exists("curate/wr/catalog/_watch.json")
        assert _second_watch("s3://curate/wr") and not s3fs.S3FileSystem().exists("curate/wr/catalog/_watch.json")
    s3fs.S3FileSystem.clear_instance_cache()

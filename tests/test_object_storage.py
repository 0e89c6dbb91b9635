"""Object storage the way users use it: a real S3-compatible server (moto's server mode) on loopback; inputs read from
s3://, a work root on s3://, the loader reading the manifest and shards back from it, a corpus landed under an s3://
landing prefix backfilled, and the commit protocol: one run per work root (lease), versions never replaced."""
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import REPO, SAMPLE, moto_s3

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port, this process's env pointed at it, a bucket with two corpora."""
    with moto_s3() as s3_env:
        saved = {k: os.environ.get(k) for k in [*s3_env, "CURATE_CACHE"]}
        os.environ.update(s3_env, CURATE_CACHE=str(tmp_path_factory.mktemp("cache")))
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.put_file(str(SAMPLE / "legal.jsonl.gz"), "curate/in/legal.jsonl.gz")
        fs.put_file(str(SAMPLE / "code.jsonl.gz"), "curate/in/code/code.jsonl.gz")  # the local input's relative name
        try:
            yield fs
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _curate(tmp_path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("tokenize:\n  vocab_size: 1000\nrunner:\n  workers: 2\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}, **env_extra}
    return subprocess.run([str(BIN / "curate"), "run", *args, "--config", str(cfg)], env=env, capture_output=True,
                          text=True, timeout=600)


def _shards(manifest: dict) -> list:
    return sorted((s["domain"], sh["sha256"], sh["tokens"]) for s in manifest["sources"]
                  for sh in s["shards"] + s["validation_shards"])


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    """The same two corpora curated into a local work root and, from s3://, into an s3:// work root."""
    tmp = tmp_path_factory.mktemp("runs")
    local = _curate(tmp, f"legal={SAMPLE / 'legal.jsonl.gz'}", f"code={SAMPLE / 'code.jsonl.gz'}", "--out",
                    str(tmp / "local"))
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-2000:]
    remote = _curate(tmp, "s3://curate/in/legal.jsonl.gz", "s3://curate/in/code", "--out", "s3://curate/work")
    assert remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-2000:]
    return tmp, remote


def test_a_work_root_on_s3_holds_the_local_runs_outputs(s3, runs):
    tmp, _ = runs
    local = json.loads((tmp / "local" / "manifests" / "default" / "v0001.json").read_text())
    remote = json.loads(s3.cat_file("curate/work/manifests/default/v0001.json"))
    assert remote["fingerprint"] == local["fingerprint"] and _shards(remote) == _shards(local)
    for s in remote["sources"]:  # every shard the manifest names is on S3 with its sha256
        for sh in s["shards"]:
            assert hashlib.sha256(s3.cat_file(f"curate/work/{sh['path']}")).hexdigest() == sh["sha256"]
    report = json.loads(s3.cat_file("curate/work/report.json"))
    assert report["balanced"] and report["docs_in"] == report["kept"] + report["rejected"] > 0
    assert not s3.exists("curate/work/_lease.json")  # released


def test_inputs_on_s3_are_streamed_by_the_worker_never_staged_on_disk(s3, runs):
    """The run above read its s3:// inputs where it ingested them: nothing of them is under the local cache."""
    cache = Path(os.environ["CURATE_CACHE"])
    assert not (cache / "inputs").exists(), sorted(p.name for p in (cache / "inputs").rglob("*"))
    report = json.loads(s3.cat_file("curate/work/report.json"))
    assert {c["corpus"] for c in report["corpora"]} == {"legal", "code"}


@pytest.mark.parametrize("kind", ["warc", "parquet", "zst", "truncated"])
def test_each_input_format_streamed_from_s3_gives_what_the_local_file_gives(s3, tmp_path, kind):
    """A WARC crawl (read through its restarts and its tail check), a Parquet file (range reads), a zstd JSONL file
    and a WARC cut short: the same documents and rejects from the object as from the local file."""
    import pyarrow.parquet as pq
    import zstandard

    from curate.schemas.config import IngestConfig
    from curate.tasks.ingest.ingest import ingest_file
    from curate.tasks.ingest.inputs import resolve_input

    web = REPO.parent / "shared" / "corpora" / "web"
    if kind == "warc":
        local = web / "iana.warc.gz"
    elif kind == "truncated":
        local = web / "crawl-truncated.warc.gz"
    elif kind == "parquet":
        local = tmp_path / "legal.parquet"
        rows = [json.loads(line) for line in gzip.open(SAMPLE / "legal.jsonl.gz", "rt")]
        pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in rows]), local,
                       row_group_size=50)
    else:
        local = tmp_path / "legal.jsonl.zst"
        local.write_bytes(zstandard.ZstdCompressor().compress(gzip.open(SAMPLE / "legal.jsonl.gz").read()))
    s3.put_file(str(local), f"curate/formats/{kind}/{local.name}")
    results = {}
    for where, arg in (("local", f"c={local}"), ("s3", f"c=s3://curate/formats/{kind}/{local.name}")):
        [f] = resolve_input(arg).files
        res = ingest_file(f, IngestConfig(), tmp_path / where)
        part = pq.read_table(tmp_path / where / res.parts[0].docs_path, columns=["id", "text"])
        results[where] = (res.docs_in, res.kept, res.by_reason, part.to_pylist())
    assert results["s3"] == results["local"] and results["local"][0] > 0


def test_a_second_run_on_the_s3_work_root_does_only_the_missing_work(s3, runs, tmp_path):
    """From another machine (an empty local cache): it pulls the work root, reuses every part, adds no version."""
    res = _curate(tmp_path, "s3://curate/in/legal.jsonl.gz", "s3://curate/in/code", "--out", "s3://curate/work",
                  CURATE_CACHE=str(tmp_path / "other-machine"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert [p for p in s3.ls("curate/work/manifests/default", detail=False) if p.endswith(".json")] == [
        "curate/work/manifests/default/latest.json", "curate/work/manifests/default/v0001.json"]
    report = json.loads(s3.cat_file("curate/work/report.json"))
    assert all(t["parts_reused"] == t["parts"] for t in report["stage_times"] if t["parts"]), report["stage_times"]


def test_the_rejects_of_an_s3_work_root_are_listed_as_the_run_says(s3, runs):
    """The run's last lines name `curate rejects --out s3://...`: it lists what the local run's rejects list."""
    tmp, remote = runs
    assert "curate rejects --out s3://curate/work" in remote.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    got = [subprocess.run([str(BIN / "curate"), "rejects", "--out", out, "--limit", "0"], env=env,
                          capture_output=True, text=True, timeout=300) for out in ("s3://curate/work",
                                                                                   str(tmp / "local"))]
    assert got[0].returncode == 0, got[0].stdout[-2000:] + got[0].stderr[-2000:]
    assert got[0].stdout.split("\n")[-2] == got[1].stdout.split("\n")[-2] and "rejected" in got[0].stdout


def test_the_loader_reads_the_manifest_and_shards_from_s3(s3, runs):
    from curate.tasks.train.loader import MixtureDataset

    tmp, _ = runs
    remote = MixtureDataset("s3://curate/work/manifests/default", seq_len=64)
    local = MixtureDataset(tmp / "local" / "manifests" / "default", seq_len=64)
    for i in (0, 1, 17):
        assert remote.sample(i)["input_ids"].tolist() == local.sample(i)["input_ids"].tolist()


def test_the_proxy_reads_an_s3_manifest_folder_as_the_loader_does(s3, runs):
    """The proxy's manifest resolution fetched the version like the loader (it once turned s3://b/x into s3:/b/x and
    followed latest.json): the newest version file, checked, in the local cache."""
    from curate.schemas.proxy import ProxyConfig
    from curate.tasks.learn.batches import ProxyError
    from curate.tasks.learn.proxy import preflight

    try:
        path, m, _ = preflight("s3://curate/work/manifests/default", ProxyConfig(seq_len=64, steps=1, batch_size=1))
        assert path.is_file() and path.name == "v0001.json" and m.version == 1
    except ProxyError as err:  # this tiny manifest holds out no text of some domain: said of the fetched version
        assert "/manifests/default/v0001.json: domain(s)" in str(err) and "s3:/" not in str(err), err


def test_a_shard_changed_on_s3_is_refused_by_the_loader(s3, runs, tmp_path, monkeypatch):
    from curate.tasks.train.loader import MixtureDataset
    from curate.tasks.train.manifests import ManifestError

    for p in s3.find("curate/work"):  # a copy of the work root whose first shard is altered
        s3.copy(p, p.replace("curate/work/", "curate/tampered/"))
    manifest = json.loads(s3.cat_file("curate/tampered/manifests/default/v0001.json"))
    shard = manifest["sources"][0]["shards"][0]["path"]
    s3.pipe_file(f"curate/tampered/{shard}", s3.cat_file(f"curate/tampered/{shard}")[:-8] + b"\0" * 8)
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    ds = MixtureDataset("s3://curate/tampered/manifests/default/v0001.json", seq_len=64)
    with pytest.raises(ManifestError, match="sha256"):  # when the shard is first read
        ds.domain_stream(0).read(0, 64)
    assert not list((tmp_path / "cache").rglob("*.arrow"))  # never cached


def test_dataloader_workers_stream_an_s3_manifest_through_a_bounded_cache(s3, runs, tmp_path, monkeypatch):
    """Two DataLoader worker processes read the shards from S3 themselves, through one cache folder bounded in
    bytes, and give the batches the local manifest gives."""
    from curate.tasks.train.loader import MixtureDataset

    tmp, _ = runs
    local = MixtureDataset(tmp / "local" / "manifests" / "default", seq_len=64, batch_size=4, shuffle_shards=1)
    sizes = sorted((r.bytes for s in local.manifest.sources for r in s.shards), reverse=True)
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CURATE_CACHE_BYTES", str(sizes[0] + sizes[1]))
    with pytest.warns(UserWarning, match="shard cache holds"):
        remote = MixtureDataset("s3://curate/work/manifests/default", seq_len=64, batch_size=4, shuffle_shards=1)
    want = [b["input_ids"] for b in local.loader(num_workers=0)]
    got = [b["input_ids"] for b in remote.loader(num_workers=2, persistent_workers=False)]
    assert len(got) == len(want) > 0 and all(a.equal(b) for a, b in zip(got, want))
    cached = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.arrow"))
    assert 0 < cached <= sizes[0] + sizes[1] < sum(sizes)


def test_two_runs_cannot_share_an_s3_work_root(s3, runs, tmp_path):
    from curate.tasks.engine.storage import Lease

    held = Lease("s3://curate/work")
    held.acquire()
    try:
        res = _curate(tmp_path, "s3://curate/in/legal.jsonl.gz", "--out", "s3://curate/work")
    finally:
        held.release()
    assert res.returncode != 0 and "is in use by another run" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    expired = Lease("s3://curate/work", ttl_s=-1)  # a killed run's lease, past its time, is taken over
    expired.acquire()
    Lease("s3://curate/work").acquire()


def test_a_published_version_is_never_replaced(s3, tmp_path):
    from curate.tasks.engine.spool import Spool
    from curate.tasks.engine.storage import StorageError

    work = tmp_path / "w"
    (work / "manifests" / "x").mkdir(parents=True)
    version = work / "manifests" / "x" / "v0001.json"
    version.write_text('{"a": 1}')
    (work / "shard.arrow").write_bytes(b"shard")
    assert Spool("s3://curate/pv", work, revalidate=False).push() == ["shard.arrow", "manifests/x/v0001.json"]  # data first
    other = tmp_path / "other"
    (other / "manifests" / "x").mkdir(parents=True)
    (other / "manifests" / "x" / "v0001.json").write_text('{"a": 2}')
    with pytest.raises(StorageError, match="never replaced"):
        Spool("s3://curate/pv", other, revalidate=False).push()
    assert s3.cat_file("curate/pv/manifests/x/v0001.json") == b'{"a": 1}'


def test_a_corpus_landed_under_an_s3_prefix_is_backfilled(s3, tmp_path):
    from curate.flows.proxy import run_flow
    from curate.flows.service import backfill
    from curate.tasks.ingest.landing import scan_landing

    s3.put_file(str(SAMPLE / "legal.jsonl.gz"), "curate/landing/legal/part-0.jsonl.gz")
    s3.put_file(str(SAMPLE / "code.jsonl.gz"), "curate/landing/halfway/part-0.jsonl.gz")  # no _READY yet
    s3.pipe_file("curate/landing/legal/_READY", b"")
    landed = {c.name: c for c in scan_landing("s3://curate/landing")}
    assert landed["legal"].ready and landed["legal"].files == 1 and not landed["halfway"].ready
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("tokenize:\n  vocab_size: 1000\nrunner:\n  workers: 1\n")
    out = run_flow(backfill, path=landed["legal"].path, work_root=str(tmp_path / "work"), config_path=str(cfg),
                   fingerprint=landed["legal"].fingerprint)
    assert out["corpus"] == "legal" and not out["skipped"] and out["docs_in"] == out["kept"] + out["rejected"] > 0
    assert Path(out["manifest"]).is_file()


def _private_worker(address: str, tag: str) -> subprocess.Popen:
    """A Dask worker (as the README starts one) on a "machine" of its own: a mount namespace with an empty tmpfs over
    /tmp and over ~/.cache, so it sees neither the flow's disk (its spool, caches and models, this test's files)
    nor another worker's; only the code (the repository and its virtual environment, put back where they were when
    they live under /tmp) and the S3 server."""
    home_cache = Path.home() / ".cache"
    home_cache.mkdir(exist_ok=True)
    keep = REPO.resolve()
    under_tmp = keep.is_relative_to("/tmp")
    script = " && ".join([
        *([f"mount --bind {keep} /mnt"] if under_tmp else []),
        "mount -t tmpfs tmpfs /tmp", f"mount -t tmpfs tmpfs {home_cache}",
        *([f"mkdir -p {keep}", f"mount --bind /mnt {keep}"] if under_tmp else []),
        f"exec {BIN / 'dask'} worker {address} --nworkers 1 --nthreads 1 --no-dashboard --name {tag}"])
    env = {**os.environ, "TMPDIR": "/tmp", "CURATE_CACHE": "/tmp/cache", "CURATE_MODEL_CACHE": "/tmp/models"}
    env.pop("CURATE_SPOOL", None)
    return subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _cluster_run(tmp_path, address: str, out: str, **popen) -> subprocess.Popen:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(f"tokenize:\n  vocab_size: 1000\nrunner:\n  kind: dask\n  address: {address}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.Popen([str(BIN / "curate"), "run", "s3://curate/in/legal.jsonl.gz", "s3://curate/in/code",
                             "--out", out, "--config", str(cfg)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def _when_classify_runs(s3, out: str, run: subprocess.Popen, client) -> list:
    """Wait until classify's tasks are out (the flow publishes the models in the work root just before sending the
    first) and a worker is busy; the busy workers' addresses."""
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        s3.invalidate_cache()
        busy = [w for w, tasks in client.processing().items() if tasks]
        if busy and s3.exists(f"{out.removeprefix('s3://')}/classify/models"):
            return busy
        time.sleep(0.05)
    raise AssertionError("classify never ran on a worker: " + (run.communicate()[0][-3000:] if run.poll() else ""))


def _remote_outputs(s3, out: str) -> tuple:
    m = json.loads(s3.cat_file(f"{out.removeprefix('s3://')}/manifests/default/v0001.json"))
    report = json.loads(s3.cat_file(f"{out.removeprefix('s3://')}/report.json"))
    return m["fingerprint"], _shards(m), [(c["corpus"], c["docs_in"], c["kept"], c["rejected"], c["by_reason"])
                                          for c in report["corpora"]]


def test_workers_that_share_no_disk_run_every_stage_on_s3_through_kills(s3, runs, tmp_path):
    """A scheduler and two workers started as the README shows, each in a mount namespace of its own (no view of the
    flow's disk or of each other's), inputs and work root on S3. A worker SIGKILLed while it runs classify: Dask
    runs its task again, and the outputs are the local run's. Then the flow killed during classify (its whole
    process group) and the run started again with a third worker: the same outputs again."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine gives no mount namespaces (unshare -m), so no worker can be given its own disk")
    from distributed import Client

    from curate.flows.server import free_port

    tmp, _ = runs
    local_manifest = json.loads((tmp / "local" / "manifests" / "default" / "v0001.json").read_text())
    local_report = json.loads((tmp / "local" / "report.json").read_text())
    want = (local_manifest["fingerprint"], _shards(local_manifest),
            [(c["corpus"], c["docs_in"], c["kept"], c["rejected"], c["by_reason"]) for c in local_report["corpora"]])
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        time.sleep(3)
        procs += [_private_worker(address, f"w{k}") for k in (1, 2)]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
            run = _cluster_run(tmp_path, address, "s3://curate/cluster")
            busy = _when_classify_runs(s3, "s3://curate/cluster", run, client)
            os.kill(client.run(os.getpid, workers=[busy[0]])[busy[0]], signal.SIGKILL)
            out, _ = run.communicate(timeout=600)
            assert run.returncode == 0, out[-3000:]
            assert _remote_outputs(s3, "s3://curate/cluster") == want
            # the flow killed; the run again with three workers
            run = _cluster_run(tmp_path, address, "s3://curate/resumed", start_new_session=True)
            _when_classify_runs(s3, "s3://curate/resumed", run, client)
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
            assert not s3.exists("curate/resumed/report.json")
            procs.append(_private_worker(address, "w3"))
            client.wait_for_workers(3, timeout=120)
            s3.rm_file("curate/resumed/_lease.json")  # the killed run's (else it expires after CURATE_LEASE_S)
            run = _cluster_run(tmp_path, address, "s3://curate/resumed")
            out, _ = run.communicate(timeout=600)
            assert run.returncode == 0, out[-3000:]
            assert _remote_outputs(s3, "s3://curate/resumed") == want
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)

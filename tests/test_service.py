"""curate as a service on a real Prefect server: deployments from deploy/prefect.yaml, a process worker, a corpus
landing and being backfilled, and the flow run's page in the Prefect UI (headless Chromium)."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from flows.runtime import ServerUnreachable, check_reachable
from flows.server import free_port, replace_worker, server_down, server_up
from tasks.landing import READY_MARKER, Catalog
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("service")
    (base / "cfg.yaml").write_text("tokenize:\n  vocab_size: 1000\n")
    info = server_up(base / "home", free_port(), base / "work", base / "landing", config=base / "cfg.yaml")
    (base / "landing").mkdir(exist_ok=True)
    try:
        yield info, base
    finally:
        stopped = server_down(base / "home")
        assert len(stopped) == 2 and not (base / "home" / "curate-server.json").exists()


def _api(info, path, body=None):
    url = info["url"] + path
    resp = httpx.post(url, json=body or {}, timeout=30) if body is not None else httpx.get(url, timeout=30)
    resp.raise_for_status()
    return resp.json()


def _watch(info):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: info["url"]}):
        run = run_deployment("watch-corpora/watch-corpora", timeout=180)
    assert run.state.is_completed(), run.state
    return run


def _wait_done(base, name, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = Catalog(base / "work").entries().get(name, {})
        if entry.get("status") == "done":
            return entry
        if entry.get("status") == "failed":
            pytest.fail(f"backfill of {name} failed: {entry.get('error')}\n"
                        + (base / "home" / "worker.log").read_text()[-4000:])
        time.sleep(2)
    pytest.fail(f"backfill of {name} did not finish in {timeout} s:\n" + (base / "home" / "worker.log").read_text()[-4000:])


def _land(landing, name, sample_file, ready=True):
    d = landing / name
    d.mkdir()
    shutil.copy(SAMPLE / sample_file, d / sample_file)
    if ready:
        (d / READY_MARKER).write_text("")


def _backfill_runs(info):
    runs = _api(info, "/flow_runs/filter", {"flows": {"name": {"any_": ["backfill"]}}, "limit": 50, "offset": 0})
    return {r["id"]: r for r in runs}


def test_a_landed_corpus_is_backfilled_once_into_a_new_manifest_version(service):
    info, base = service
    landing, work = base / "landing", base / "work"
    deployments = {d["name"] for d in _api(info, "/deployments/filter", {"limit": 50, "offset": 0})}
    assert {"scheduled", "backfill", "watch-corpora", "train-proxy"} <= deployments
    _land(landing, "legal-a", "legal.jsonl.gz")
    _land(landing, "half-copied", "code.jsonl.gz", ready=False)
    _watch(info)
    first = _wait_done(base, "legal-a")
    assert first["docs_in"] == first["kept"] + first["rejected"] > 0
    assert "half-copied" not in Catalog(work).entries(), "a corpus without its marker is never picked up"
    v1 = json.loads((work / "manifests" / "default" / "v0001.json").read_text())
    old = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (work / "tokens").rglob("*.arrow")}

    _land(landing, "code-b", "code.jsonl.gz")
    _watch(info)
    second = _wait_done(base, "code-b")
    assert second["manifest"].endswith("v0002.json")
    v2 = json.loads((work / "manifests" / "default" / "v0002.json").read_text())
    paths = {sh["path"] for s in v2["sources"] for sh in s["shards"]}
    assert {sh["path"] for s in v1["sources"] for sh in s["shards"]} <= paths, "old shards stay in the new version"
    assert any("/code-b/" in p for p in paths), "the new corpus's shards are in it"
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in old} == old, "old shards untouched"

    before = _backfill_runs(info)
    _watch(info)
    time.sleep(3)
    assert _backfill_runs(info).keys() == before.keys(), "a second watch triggers nothing"
    assert all(r["state_type"] == "COMPLETED" for r in before.values())

    (landing / "code-b" / "extra.jsonl").write_text('{"id": "x", "text": "changed after landing"}\n')
    run = _watch(info)
    arts = _api(info, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [str(run.id)]}}, "limit": 10,
                                            "offset": 0})
    table = next(a for a in arts if a["key"] == "watch-corpora-landing")
    assert "changed after it was fingerprinted" in json.dumps(table["data"])


def test_a_backfill_whose_worker_died_is_started_again_and_resumes(service):
    info, base = service
    _land(base / "landing", "reference-c", "reference.jsonl.gz")
    pids = json.loads((base / "home" / "curate-server.json").read_text())["pids"]
    _watch(info)
    deadline = time.monotonic() + 120
    while Catalog(base / "work").entries()["reference-c"].get("status") != "running":
        assert time.monotonic() < deadline, "the backfill never started"
        time.sleep(0.5)
    runs = subprocess.run(["pgrep", "-P", str(pids["worker"])], capture_output=True, text=True).stdout.split()
    os.killpg(pids["worker"], signal.SIGKILL)  # the machine goes: the worker and the flow run it started
    for pid in runs:
        os.kill(int(pid), signal.SIGKILL)
    run_id = Catalog(base / "work").entries()["reference-c"]["flow_run_id"]
    # The server's heartbeat automation marks such a run Crashed after three missed beats (90 s, once the run
    # has sent one); the test does what that automation does rather than wait for it.
    time.sleep(3)
    if _api(info, f"/flow_runs/{run_id}")["state_type"] != "CRASHED":
        _api(info, f"/flow_runs/{run_id}/set_state", {"state": {"type": "CRASHED", "name": "Crashed",
                                                                "message": "no heartbeat"}, "force": True})
    replace_worker(base / "home", info["env"])
    _watch(info)
    entry = _wait_done(base, "reference-c")
    assert entry["flow_run_id"] != run_id and entry["docs_in"] == entry["kept"] + entry["rejected"]


def test_the_backfill_run_page_shows_its_summary_in_the_prefect_ui(service, tmp_path, request):
    info, base = service
    if Catalog(base / "work").entries().get("legal-a", {}).get("status") != "done":
        pytest.skip("needs the backfill of the previous test")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    run_id = Catalog(base / "work").entries()["legal-a"]["flow_run_id"]
    arts = _api(info, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 10, "offset": 0})
    summary = next(a for a in arts if a["key"] == "backfill-summary")
    assert "documents in" in summary["data"] and "Manifest" in summary["data"]
    out = request.config.rootpath / "test-output"  # screenshots for a person to look at
    out.mkdir(exist_ok=True)
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1400,1000",
           "--virtual-time-budget=15000"]
    for name, page in (("backfill-run.png", f"{info['ui']}/runs/flow-run/{run_id}"),
                       ("backfill-summary.png", f"{info['ui']}/artifacts/artifact/{summary['id']}")):
        (out / name).unlink(missing_ok=True)
        subprocess.run(cmd + [f"--screenshot={out / name}", page], capture_output=True, timeout=120)
        assert (out / name).stat().st_size > 20_000, f"no screenshot of {page}"


def test_an_unreachable_server_is_a_clear_error_not_a_hang():
    start = time.monotonic()
    with pytest.raises(ServerUnreachable, match="not reachable"):
        check_reachable(f"http://127.0.0.1:{free_port()}/api", timeout=2)
    assert time.monotonic() - start < 10

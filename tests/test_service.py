"""curate as a service on a real Prefect server, used the way users use it: `curate server up`'s server, pool,
deployments (the documented `prefect deploy` command) and worker; schedules that fire by themselves (nobody triggers
the watch); corpora landing and being backfilled; the stock `prefect` CLI against the server; auth that refuses an
unauthenticated or cross-origin request; and the run's page in the Prefect UI (headless Chromium, logged in)."""
import base64
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from curate.flows.runtime import ServerUnreachable, check_reachable
from curate.flows.server import PREFECT_FILE, REPO_ROOT, free_port, replace_worker, server_down, server_up
from curate.tasks.ingest.landing import READY_MARKER, Catalog
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow
WATCH_SECONDS = 10


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("service")
    (base / "cfg.yaml").write_text("tokenize:\n  vocab_size: 1000\n")
    (base / "landing").mkdir()
    info = server_up(base / "home", free_port(), base / "work", base / "landing", config=base / "cfg.yaml",
                     watch_seconds=WATCH_SECONDS)
    try:
        yield info, base
    finally:
        stopped = server_down(base / "home")
        assert len(stopped) == 2 and not (base / "home" / "curate-server.json").exists()


def _headers(info, auth=True):
    """Basic auth, and the CSRF token the server asks of every write (Prefect's client fetches one the same way)."""
    if not auth:
        return {}
    headers = {"Authorization": "Basic " + base64.b64encode(info["env"]["PREFECT_API_AUTH_STRING"].encode()).decode()}
    if "csrf" not in info:
        client = str(uuid.uuid4())
        token = httpx.get(f"{info['url']}/csrf-token?client={client}", headers=headers, timeout=30).json()["token"]
        info["csrf"] = {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": client}
    return {**headers, **info["csrf"]}


def _api(info, path, body=None, tries: int = 3):
    """One API call; a read that times out is tried again (Prefect's SQLite server stalls for tens of seconds when
    the machine is loaded: the test is of what it answers, not of how fast)."""
    url = info["url"] + path
    for left in range(tries - 1, -1, -1):
        try:
            resp = httpx.post(url, json=body, headers=_headers(info), timeout=30) if body is not None else \
                httpx.get(url, headers=_headers(info), timeout=30)
            break
        except httpx.ReadTimeout:
            if not left:
                raise
    resp.raise_for_status()
    return resp.json()


def _runs(info, flow_name):
    return _api(info, "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}, "limit": 200, "offset": 0,
                                            "sort": "EXPECTED_START_TIME_ASC"})


def _worker_log(base):
    return (base / "home" / "worker.log").read_text(errors="replace")[-4000:]


def _wait_status(base, name, statuses, timeout=300, avoid=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = Catalog(base / "work").entries().get(name, {})
        if entry.get("status") in statuses:
            return entry
        if entry.get("status") in avoid:
            pytest.fail(f"backfill of {name}: {entry.get('status')} {entry.get('error')}\n" + _worker_log(base))
        time.sleep(1)
    pytest.fail(f"{name} did not reach {statuses} in {timeout} s:\n" + _worker_log(base))


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _final(info, run_id, timeout=60):
    deadline = time.monotonic() + timeout
    while (run := _api(info, f"/flow_runs/{run_id}"))["state_type"] not in ("COMPLETED", "FAILED", "CRASHED"):
        assert time.monotonic() < deadline, f"flow run {run_id} still {run['state_type']}"
        time.sleep(1)
    return run


def _wait_watch_after(info, t0, state="COMPLETED", timeout=120, first=True):
    """The first watch-corpora run that started after t0 (an ISO time) and reached a final state (`first=False`: the
    first in `state`, where runs that started before a change and saw the landing before it may come first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted((r for r in _runs(info, "watch-corpora") if (r["start_time"] or "") > t0
                       and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")
                       and (first or r["state_type"] == state)), key=lambda r: r["start_time"])
        if done:
            assert done[0]["state_type"] == state, done[0]["state"]
            return done[0]
        time.sleep(1)
    pytest.fail(f"no watch-corpora run after {t0} finished in {timeout} s")


def _land(landing, name, sample_file, ready=True):
    d = landing / name
    d.mkdir()
    shutil.copy(SAMPLE / sample_file, d / sample_file)
    if ready:
        (d / READY_MARKER).write_text("")


def _prefect_cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_a_scheduled_curation_with_nothing_landed_does_nothing(service):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    info, base = service
    _land(base / "landing", "not-yet", "legal.jsonl.gz", ready=False)
    with temporary_settings({PREFECT_API_URL: info["url"], PREFECT_API_AUTH_STRING: info["env"]["PREFECT_API_AUTH_STRING"]}):
        run = run_deployment("scheduled-curation/scheduled", timeout=240)
    assert run.state.is_completed(), run.state
    arts = _api(info, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [str(run.id)]}}, "limit": 10,
                                            "offset": 0})
    summary = next(a for a in arts if a["key"] == "scheduled-curation-summary")
    assert "nothing to curate" in summary["data"] and "not ready" in summary["data"]
    assert not (base / "work" / "tokenizer").exists() and not (base / "work" / "manifests").exists(), \
        "the demo sample (or anything) was curated into the server's work root"
    shutil.rmtree(base / "landing" / "not-yet")


def test_schedules_fire_by_themselves_and_landed_corpora_are_backfilled(service):
    info, base = service
    landing, work = base / "landing", base / "work"
    deployments = {d["name"]: d for d in _api(info, "/deployments/filter", {"limit": 50, "offset": 0})}
    assert {"scheduled", "backfill", "watch-corpora", "train-proxy"} <= set(deployments)
    _land(landing, "legal-a", "legal.jsonl.gz")
    _land(landing, "half-copied", "code.jsonl.gz", ready=False)
    first = _wait_status(base, "legal-a", {"done"}, avoid={"failed"})  # nobody triggers anything from here on
    assert first["docs_in"] == first["kept"] + first["rejected"] > 0
    watches = _runs(info, "watch-corpora")
    assert watches and all(r["auto_scheduled"] for r in watches), "every watch run came from the schedule"
    assert any(r["state_type"] == "COMPLETED" for r in watches)
    backfill = _api(info, f"/flow_runs/{first['flow_run_id']}")
    assert backfill["name"] == "backfill legal-a → v0001" and "corpus:legal-a" in backfill["tags"]
    assert "half-copied" not in Catalog(work).entries(), "a corpus without its marker is never picked up"
    v1 = json.loads((work / "manifests" / "default" / "v0001.json").read_text())
    old = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (work / "tokens").rglob("*.arrow")}

    _land(landing, "code-b", "code.jsonl.gz")
    second = _wait_status(base, "code-b", {"done"}, avoid={"failed"})
    assert second["manifest"].endswith("v0002.json")
    v2 = json.loads((work / "manifests" / "default" / "v0002.json").read_text())
    paths = {sh["path"] for s in v2["sources"] for sh in s["shards"]}
    assert {sh["path"] for s in v1["sources"] for sh in s["shards"]} <= paths, "old shards stay in the new version"
    assert any("/code-b/" in p for p in paths), "the new corpus's shards are in it"
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in old} == old, "old shards untouched"

    before = {r["id"] for r in _runs(info, "backfill")}
    _wait_watch_after(info, _utc_now())
    assert {r["id"] for r in _runs(info, "backfill")} == before, "a watch with nothing new triggers nothing"

    changed = _utc_now()  # (before the change: a watch that started just before it may be the one that sees it)
    (landing / "code-b" / "extra.jsonl").write_text('{"id": "x", "text": "changed after landing"}\n')
    run = _wait_watch_after(info, changed, state="FAILED", first=False)
    assert "code-b" in run["state"]["message"], "a refusal is a failed run that says why"
    arts = _api(info, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 10,
                                            "offset": 0})
    table = next(a for a in arts if a["key"] == "watch-corpora-landing")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    refused = next(r for r in rows if r["corpus"] == "code-b")
    assert refused["action"] == "refused" and "changed after it was fingerprinted" in refused["why"]
    assert next(r for r in rows if r["corpus"] == "half-copied")["why"] == f"no {READY_MARKER} marker yet"
    # the same refusal again: recorded in the catalog and said in the next watch's run name, not a failure every watch
    _wait_watch_after(info, _utc_now())  # COMPLETED
    assert Catalog(work).entries()["code-b"]["refused"]["why"].startswith("its files changed after")
    os.remove(landing / "code-b" / "extra.jsonl")


def test_a_failed_backfill_fails_at_once_and_is_not_retried(service):
    """(`curate server retry` starting it again is run by tests/test_documented_commands.py.)"""
    info, base = service
    (base / "landing" / "notes-only").mkdir()
    (base / "landing" / "notes-only" / "README.md").write_text("no corpus files here\n")
    (base / "landing" / "notes-only" / READY_MARKER).write_text("")
    failed = _wait_status(base, "notes-only", {"failed"}, timeout=180)
    assert "no input files" in failed["error"]
    run = _final(info, failed["flow_run_id"])
    assert run["state_type"] == "FAILED" and run["run_count"] == 1, "bad input is not retried"
    assert "no input files" in run["state"]["message"]
    shutil.rmtree(base / "landing" / "notes-only")


def test_the_stock_prefect_cli_works_against_the_server(service):
    info, _ = service
    env = {**os.environ, "PREFECT_API_URL": info["url"],
           "PREFECT_API_AUTH_STRING": info["env"]["PREFECT_API_AUTH_STRING"]}
    for args in (["deployment", "ls"], ["flow-run", "ls"], ["work-pool", "ls"], ["artifact", "ls"],
                 ["automation", "ls"]):
        res = _prefect_cli(args, env)
        assert res.returncode == 0, f"prefect {' '.join(args)}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
    assert "watch-corpora" in _prefect_cli(["deployment", "ls"], env).stdout


def test_deploy_without_its_variables_refuses_before_changing_anything(service):
    info, _ = service
    before = {d["name"]: d["updated"] for d in _api(info, "/deployments/filter", {"limit": 50, "offset": 0})}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATE_")}
    env.update({"PREFECT_API_URL": info["url"], "PREFECT_API_AUTH_STRING": info["env"]["PREFECT_API_AUTH_STRING"]})
    res = _prefect_cli(["--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)], env, timeout=300)
    assert res.returncode != 0 and "CURATE_WORK_ROOT" in res.stdout + res.stderr, res.stdout[-3000:]
    after = {d["name"]: d["updated"] for d in _api(info, "/deployments/filter", {"limit": 50, "offset": 0})}
    assert after == before, "no deployment was created or changed"


def test_the_server_is_closed_to_unauthenticated_and_cross_origin_requests(service):
    info, base = service
    body = {"limit": 1, "offset": 0}
    # What a web page in the user's browser could send: a write with no credentials and no CSRF token.
    assert httpx.post(info["url"] + "/deployments/filter", json=body, timeout=30).status_code in (401, 403)
    assert httpx.post(info["url"] + "/flow_runs/filter", json=body, headers={
        k: v for k, v in _headers(info).items() if k != "Authorization"}, timeout=30).status_code == 401
    bad = {"Authorization": "Basic " + base64.b64encode(b"curate:wrong").decode()}
    assert httpx.get(info["url"] + "/admin/version", headers=bad, timeout=30).status_code == 401
    assert httpx.get(info["url"] + "/csrf-token?client=x", timeout=30).status_code == 401
    evil = httpx.options(info["url"] + "/deployments/filter", timeout=30, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert evil.headers.get("access-control-allow-origin") not in ("*", "http://evil.example")
    assert (base / "home" / "api-auth").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ServerUnreachable, match="refused the credentials"):
        env_auth = os.environ.pop("PREFECT_API_AUTH_STRING", None)
        try:
            check_reachable(info["url"])
        finally:
            if env_auth is not None:
                os.environ["PREFECT_API_AUTH_STRING"] = env_auth


def test_a_backfill_whose_worker_died_is_started_again_and_resumes(service):
    info, base = service
    _land(base / "landing", "reference-c", "reference.jsonl.gz")
    pids = json.loads((base / "home" / "curate-server.json").read_text())["pids"]
    deadline = time.monotonic() + 120
    while Catalog(base / "work").entries().get("reference-c", {}).get("status") != "running":
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
    entry = _wait_status(base, "reference-c", {"done"}, avoid={"failed"})  # the scheduled watch restarts it
    assert entry["flow_run_id"] != run_id and entry["docs_in"] == entry["kept"] + entry["rejected"]


def test_the_backfill_run_page_shows_its_summary_in_the_prefect_ui(service, tmp_path, request):
    from tests.browser import screenshots

    info, base = service
    if Catalog(base / "work").entries().get("legal-a", {}).get("status") != "done":
        pytest.skip("needs the backfill of the schedule test")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    run_id = Catalog(base / "work").entries()["legal-a"]["flow_run_id"]
    deadline, summary = time.monotonic() + 60, None
    while summary is None and time.monotonic() < deadline:  # (the catalog says done just before the summary is made)
        # (by key: a backfill has a dozen artifacts, more than a page of 10, in no order that puts this one first)
        arts = _api(info, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]},
                                                              "key": {"any_": ["backfill-summary"]}}, "limit": 10,
                                                "offset": 0})
        summary = next((a for a in arts if a["key"] == "backfill-summary"), None)
        if summary is None:
            time.sleep(1)
    assert summary is not None, "the backfill made no summary artifact"
    assert "documents in" in summary["data"] and "Manifest" in summary["data"]
    out = request.config.rootpath / "test-output"  # screenshots for a person to look at
    out.mkdir(exist_ok=True)
    pages = {out / "backfill-run.png": f"{info['ui']}/runs/flow-run/{run_id}",
             out / "backfill-summary.png": f"{info['ui']}/artifacts/artifact/{summary['id']}"}
    for p in pages:
        p.unlink(missing_ok=True)
    screenshots(chromium, free_port(), tmp_path / "chrome", info["ui"], info["env"]["PREFECT_API_AUTH_STRING"], pages)
    for p in pages:
        assert p.stat().st_size > 20_000, f"no screenshot of {pages[p]}"


def test_an_unreachable_server_is_a_clear_error_not_a_hang():
    start = time.monotonic()
    with pytest.raises(ServerUnreachable, match="not reachable"):
        check_reachable(f"http://127.0.0.1:{free_port()}/api", timeout=2)
    assert time.monotonic() - start < 10


def test_a_run_beside_the_service_reports_to_it_without_a_server_of_its_own(service, tmp_path):
    info, base = service
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["CURATE_SERVER_HOME"] = str(base / "home")
    src = tmp_path / "notes.jsonl"
    with gzip.open(SAMPLE / "literature.jsonl.gz", "rb") as f:
        src.write_bytes(f.readline())  # a real document that passes the rules (a run that keeps nothing fails)
    res = subprocess.run([str(Path(sys.executable).parent / "curate"), "run", f"beside={src}", "--out",
                          str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"reporting to the Prefect server at {info['url']}" in res.stdout
    assert any(r["name"].startswith("curate beside") for r in _runs(info, "curate"))


def test_the_services_files_are_readable_by_their_owner_only(service):
    """The server's database (and its WAL), its logs and the worker's results: 0600 in a 0700 home, not 0644 in 0755."""
    import stat

    info, base = service
    home = Path(info["home"])
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "prefect.db" for p in files) and any(p.suffix == ".log" for p in files)
    readable = [f"{p.relative_to(home)} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in files
                if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not readable, readable

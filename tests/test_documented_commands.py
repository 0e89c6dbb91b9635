"""Every command shown in README.md and deploy/README.md runs, as a user would type it (tiny settings and temporary
paths where the documented one would take minutes or write into the checkout).

The commands shown are the lines of the documents' ```sh blocks. `RUNS` gives each one, word for word, and how it
runs here; a command documented without an entry, or an entry no longer documented, fails the first test. An inline
code span that starts like a command must be (a prefix of) a shown command, or be listed in `NOT_COMMANDS`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.tasks.ingest.landing import Catalog
from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow
DOCS = (REPO / "README.md", REPO / "deploy" / "README.md")
BIN = Path(sys.executable).parent  # the virtualenv's `curate` and `prefect`, as `make` installs them
PROGRAMS = ("curate", "make", "prefect", "docker", "touch", "eval", "export", "python", "python3", "pip",
            "kubectl")
TINY = "tokenize:\n  vocab_size: 1000\nproxy:\n  n_layer: 1\n  n_embd: 32\n  seq_len: 64\n  eval_interval: 2\n" \
       "  eval_blocks: 2\n  checkpoint_interval: 2\n  warmup_steps: 1\nlearn:\n  regmix_runs: 6\n"

# Inline spans that name a program or show output, not a command to run.
NOT_COMMANDS = {"curate", "make", "prefect", "eval", "curate legal+code → default v0003",
                "prefect server start --host 127.0.0.1"}  # what `curate server up` runs itself

# Documented command -> how it runs here ({w}: a temporary folder; {port}: a free port). Order matters: later
# commands use what earlier ones made (the demo's work root, the service's server).
RUNS: dict[str, str] = {
    "make demo": "make demo OUT={w}/out",
    "make test": "",  # CI runs the suite through it (.ci/run); checked below, never run from inside the suite
    "make test-fast": "make -n test-fast | grep -- '-m \"not slow and not server\"'",  # its tier: checked below
    "curate run [INPUT ...] [--out DIR] [--config FILE]":
        "curate run data/sample/legal.jsonl.gz --out {w}/run --config {w}/tiny.yaml",
    "curate train-classifier domain --data LABELED.jsonl.gz --out DIR [--quantize]":
        "curate train-classifier domain --data {w}/labeled-small.jsonl.gz --out {w}/dom --quantize "
        "| grep 'leave-one-source-out macro-F1'",
    "curate train-classifier quality --data LABELED.jsonl.gz --out DIR":
        "curate train-classifier quality --data data/labeled/domain.jsonl.gz --out {w}/qual",
    "curate train-tokenizer --work out --out DIR": "curate train-tokenizer --work {w}/out --out {w}/tok --vocab-size 1000",
    "curate mix --out out [--method unimax]": "curate mix --out {w}/out --method unimax",
    "curate mix --out out --by language --method unimax":  # on a copy: later commands compare the series' versions
        "cp -r {w}/out {w}/bylang && curate mix --out {w}/bylang --by language --method unimax | grep 'unimax weights'",
    "curate export megatron --manifest out/manifests/default":
        "curate export megatron --manifest {w}/out/manifests/default | grep -- --train-data-path",
    "curate train-tokenizer --work out --out DIR --kind hf-bpe":
        "curate train-tokenizer --work {w}/out --out {w}/hftok --kind hf-bpe --vocab-size 2000 && test -s {w}/hftok/tokenizer.json",
    "curate inspect out/manifests/default": "curate inspect {w}/out/manifests/default",
    "curate rejects --out out [--corpus NAME] [--stage dedup] [--reason near_duplicate] [--parquet FILE]":
        "curate rejects --out {w}/out --stage dedup --parquet {w}/rejects.parquet | grep 'rejected' && "
        "test -s {w}/rejects.parquet",
    "curate train --manifest out/manifests/default --steps 200":
        "curate train --manifest {w}/out/manifests/default --steps 4 --config {w}/tiny.yaml",
    "curate learn-mixture --manifest out/manifests/default/v0001.json --method doremi":
        "curate learn-mixture --manifest {w}/out/manifests/default/v0001.json --method doremi --steps 4 "
        "--config {w}/tiny.yaml",
    "curate learn-mixture --manifest out/manifests/default/v0001.json --method regmix":
        "curate learn-mixture --manifest {w}/out/manifests/default/v0001.json --method regmix --steps 4 "
        "--config {w}/tiny.yaml",
    "curate compare-mixtures out/manifests/default/v000{1,2,3,4,5}.json":
        "curate mix --out {w}/out --method temperature && printf 'mix:\\n  method: temperature\\n  alpha: 0.6\\n' > "
        "{w}/alpha.yaml && curate mix --out {w}/out --config {w}/alpha.yaml && "
        "curate compare-mixtures {w}/out/manifests/default/v000{{1,2,3,4,5}}.json --steps 4 --seeds 2 --config {w}/tiny.yaml",
    "python tests/benchmarks/bench_ingest.py": "python tests/benchmarks/bench_ingest.py --repeats 1",
    "python tests/benchmarks/bench_langid.py": "python tests/benchmarks/bench_langid.py --chars 400",
    "python tests/benchmarks/bench_dedup.py": "python tests/benchmarks/bench_dedup.py --docs 300 --no-datatrove",
    "python tests/benchmarks/bench_dedup.py --cjk zh":
        "python tests/benchmarks/bench_dedup.py --cjk zh --no-datatrove | grep 'recall@0.8'",
    "python tests/benchmarks/bench_classify.py": "python tests/benchmarks/bench_classify.py --docs 40 --repeats 1",
    "python tests/benchmarks/bench_tokenize.py": "python tests/benchmarks/bench_tokenize.py --docs 40 --repeats 1",
    "python tests/benchmarks/bench_memory.py": "python tests/benchmarks/bench_memory.py --records 20000",
    # On a copy of the demo's work root (the same command and sample): its cold run is the demo's.
    "python tests/benchmarks/bench_fixed_cost.py":
        "cp -r {w}/out {w}/fixed && python tests/benchmarks/bench_fixed_cost.py --repeats 1 --work {w}/fixed",
    "python tests/benchmarks/bench_decontam.py": "python tests/benchmarks/bench_decontam.py --docs 50 --repeats 1",
    "python tests/benchmarks/bench_end_to_end.py":
        "python tests/benchmarks/bench_end_to_end.py --corpora {w}/small --no-training-run "
        "--tokenizer {w}/out/tokenizer/tokenizer.model",
    "python tests/benchmarks/bench_rss.py": "python tests/benchmarks/bench_rss.py --corpora {w}/small --scales 1",
    "python tests/benchmarks/bench_runner.py": "python tests/benchmarks/bench_runner.py --corpora {w}/small --runners local",
    "python tests/benchmarks/bench_web.py": "python tests/benchmarks/bench_web.py --no-quality --repeats 1",
    "python tests/benchmarks/bench_object_storage.py":
        "python tests/benchmarks/bench_object_storage.py --corpora {w}/small | grep 'per GB of text'",
    "python tests/benchmarks/bench_outputs.py digest out":
        "python tests/benchmarks/bench_outputs.py digest {w}/out | grep bytes_per_text_byte",
    "python tests/benchmarks/bench_mixtures.py":
        "python tests/benchmarks/bench_mixtures.py --work {w}/out --steps 4 --seeds 2 --no-regmix | grep 'Spearman'",
    "dask scheduler --port 8786": "(timeout -s INT 8 dask scheduler --port {port2} --no-dashboard; true) 2>&1 "
                                  "| grep 'Scheduler at'",
    "dask worker tcp://SCHEDULER_HOST:8786 --nworkers 2 --nthreads 1":
        "(dask scheduler --port {port2} --no-dashboard >/dev/null 2>&1 & S=$!; sleep 3; (timeout -s INT 10 dask worker "
        "tcp://127.0.0.1:{port2} --nworkers 2 --nthreads 1 --no-dashboard; true) 2>&1; kill $S) | grep 'Registered to'",
    "curate run --config cluster.yaml":
        "cd {w} && printf 'corpora:\\n  - {{name: legal, path: {repo}/data/sample/legal.jsonl.gz}}\\ntokenize:\\n  "
        "vocab_size: 1000\\nrunner:\\n  kind: dask\\n  address: tcp://127.0.0.1:{port2}\\n' > cluster.yaml && "
        "(dask scheduler --port {port2} --no-dashboard >/dev/null 2>&1 & S=$!; dask worker tcp://127.0.0.1:{port2} "
        "--nworkers 2 --nthreads 1 --no-dashboard >/dev/null 2>&1 & W=$!; sleep 4; curate run --config cluster.yaml "
        "--out {w}/cluster; r=$?; kill $W $S; exit $r)",
    # Against a moto S3 server on loopback (the `world` fixture: bucket my-bucket with raw/legal/ in it).
    "curate run s3://my-bucket/raw/legal/ --out s3://my-bucket/curate":
        "curate run s3://my-bucket/raw/legal/ --out s3://my-bucket/curate --config {w}/tiny.yaml",
    "curate inspect s3://my-bucket/curate/manifests/default": "curate inspect s3://my-bucket/curate/manifests/default",
    "curate run crawl=path/to/warcs/": "curate run crawl={repo}/../shared/corpora/web/iana.warc.gz --out {w}/crawl "
                                       "--config {w}/tiny.yaml",
    "python tests/benchmarks/bench_loader.py":
        "python tests/benchmarks/bench_loader.py --manifest {w}/out/manifests/default --repeats 1 --batches 50",
    # The service, in a folder of its own (its .curate-server/, out/ and landing/ are the defaults there). A watch every
    # 10 s: at 5 s, on 2 cores shared with the other test process, watch processes overlapped and the server stalled.
    "curate server up": "cd {w}/svc && curate server up --port {port}",
    "curate server up [--port 4200] [--work out] [--landing landing] [--corpora DIR] [--config FILE] "
    "[--watch-every 300]": "cd {w}/svc && curate server down && curate server up --port {port} --work out "
                           "--landing landing --config {w}/tiny.yaml --watch-every 10",
    'eval "$(curate server env)"': 'cd {w}/svc && eval "$(curate server env)" && test -n "$PREFECT_API_AUTH_STRING"',
    "prefect deployment ls": 'cd {w}/svc && eval "$(curate server env)" && prefect deployment ls',
    "prefect flow-run ls": 'cd {w}/svc && eval "$(curate server env)" && prefect flow-run ls',
    "prefect work-pool ls": 'cd {w}/svc && eval "$(curate server env)" && prefect work-pool ls',
    "prefect artifact ls": 'cd {w}/svc && eval "$(curate server env)" && prefect artifact ls',
    "prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml":
        'eval "$(cd {w}/svc && curate server env)" && export CURATE_HOME={repo} CURATE_WORK_ROOT={w}/svc/out '
        'CURATE_LANDING={w}/svc/landing CURATE_CORPORA={w}/svc/landing CURATE_CORPORA_READY_ONLY=true '
        'CURATE_WATCH_RRULE="FREQ=SECONDLY;INTERVAL=10" CURATE_CURATION_CRON="0 3 * * *" CURATE_CONFIG={w}/tiny.yaml && '
        'prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml',
    "prefect worker start --pool curate":
        'eval "$(cd {w}/svc && curate server env)" && (timeout -s INT 45 prefect worker start --pool curate; true) '
        '2>&1 | tee /dev/stderr | grep "started"',  # the worker's log shown when it does not say it started
    "touch landing/<name>/_READY": "cd {w}/svc && mkdir -p landing/legal-x && cp {repo}/data/sample/legal.jsonl.gz "
                                   "landing/legal-x/ && touch landing/legal-x/_READY",
    "curate server retry <name> --work out": "cd {w}/svc && curate server retry notes-only --work out",
    "curate server down": "cd {w}/svc && curate server down",
    "docker compose -f deploy/docker-compose.yml up -d": "",  # no Docker engine here: checked below
    # No Slurm here: the scheduler it starts, and the job script run by hand, are tested in tests/test_deploy.py.
    "python deploy/slurm/slurm_cluster.py --jobs 8 --cores 16 --memory 64GB --queue normal":
        "(timeout -s INT 20 python deploy/slurm/slurm_cluster.py --jobs 0 --cores 2 --memory 4GB --queue normal "
        "--port {port2} --host 127.0.0.1; true) | grep 'runner.address tcp://127.0.0.1'",
    "kubectl apply -n curate -f deploy/kubernetes/daskcluster.yaml": "",  # no cluster here: tests/test_deploy.py
}


def shown_commands() -> set[str]:
    out = set()
    for doc in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line:
                    out.add(line)
    return out


def inline_commands() -> set[str]:
    out = set()
    for doc in DOCS:
        prose = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        out |= {s for s in re.findall(r"`([^`\n]+)`", prose) if s.split()[0] in PROGRAMS}
    return out


def test_every_documented_command_has_a_run():
    shown = shown_commands()
    assert not shown - RUNS.keys(), f"documented, never run by a test: {sorted(shown - RUNS.keys())}"
    assert not RUNS.keys() - shown, f"run here, no longer documented: {sorted(RUNS.keys() - shown)}"
    for span in inline_commands() - NOT_COMMANDS:  # its words, in order, within a shown command
        assert any(_in_order(_words(span), _words(cmd)) for cmd in shown), \
            f"inline command {span!r} is not one of the shown (and tested) commands"


def _words(command: str) -> list[str]:
    return re.findall(r"[^\s\"'$()]+", command)


def _in_order(words: list[str], within: list[str]) -> bool:
    it = iter(within)
    return all(any(w == x for x in it) for w in words)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from curate.flows.server import free_port

    w = tmp_path_factory.mktemp("docs")
    (w / "tiny.yaml").write_text(TINY)
    (w / "small").mkdir()  # two small corpora for the end-to-end and memory benchmarks
    for name in ("legal", "techdocs"):
        shutil.copy(SAMPLE / f"{name}.jsonl.gz", w / "small" / f"{name}.jsonl.gz")
    (w / "svc").mkdir()
    _small_labeled(w / "labeled-small.jsonl.gz")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CURATE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["CURATE_MODEL_CACHE"] = os.environ["CURATE_MODEL_CACHE"]  # the session's trained default models
    info = {"w": w, "port": free_port(), "port2": free_port(), "repo": REPO, "env": env}
    moto = _s3_server(env, w)
    try:
        yield info
    finally:
        subprocess.run(f"cd {w}/svc && curate server down", shell=True, env=env, capture_output=True, timeout=120)
        moto.terminate()
        moto.wait(timeout=30)


def _s3_server(env: dict, w: Path) -> subprocess.Popen:
    """A moto S3 server on loopback for the object-storage commands, the commands' env pointed at it, and the bucket
    they name with a corpus under raw/legal/."""
    from curate.flows.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="docs", AWS_SECRET_ACCESS_KEY="docs",
               AWS_DEFAULT_REGION="us-east-1", CURATE_CACHE=str(w / "cache"))
    setup = ("import fsspec, sys, time\nfor _ in range(100):\n    try:\n        fs = fsspec.filesystem('s3')\n"
             "        fs.mkdir('my-bucket')\n        break\n    except Exception:\n        time.sleep(0.2)\n"
             "fs.put_file(sys.argv[1], 'my-bucket/raw/legal/legal.jsonl.gz')\n")
    subprocess.run([sys.executable, "-c", setup, str(SAMPLE / "legal.jsonl.gz")], env=env, check=True, timeout=120)
    return proc


def _small_labeled(dest: Path) -> None:
    """Two sources a domain, 25 records each, of the seed set: its leave-one-source-out run takes seconds."""
    import gzip
    import json

    by_source: dict[str, list[str]] = {}
    with gzip.open(REPO / "data" / "labeled" / "domain.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            by_source.setdefault(json.loads(line)["source"], []).append(line)
    keep = []
    for domain in ("code", "legal", "literature", "reference", "techdocs"):
        keep += [s for s in sorted(by_source) if s.startswith(domain + "/")][:2]
    with gzip.open(dest, "wt", encoding="utf-8") as f:
        f.writelines(line for s in keep for line in by_source[s][:25])


def _sh(command: str, world: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = command.format(w=world["w"], port=world["port"], port2=world["port2"], repo=world["repo"])
    res = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=REPO, env=world["env"], capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"`{cmd}` exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stdout + res.stderr, f"`{cmd}` printed a traceback:\n{res.stderr[-3000:]}"
    return res


RUNNABLE = [c for c, how in RUNS.items() if how]


def group(documented: str) -> str:
    """Which test file runs a command (the suite's two processes take a file each at a time, so three groups that
    share nothing run side by side): `service`, the commands of the service's folder, in order; `demo`, `make demo`
    and the commands that use its work root, in order; `other`, the rest."""
    how = RUNS[documented]
    if "{w}/svc" in how:
        return "service"
    return "demo" if documented == "make demo" or "{w}/out" in how else "other"


def runnable(name: str) -> list[str]:
    return [c for c in RUNNABLE if group(c) == name]


def check_documented_command(documented: str, world: dict) -> None:
    w = world["w"]
    if documented.startswith("curate server retry"):  # needs a backfill that failed: a corpus with no input files
        (w / "svc" / "landing" / "notes-only").mkdir(parents=True)
        (w / "svc" / "landing" / "notes-only" / "README.md").write_text("no corpus files\n")
        (w / "svc" / "landing" / "notes-only" / "_READY").write_text("")
        failed = _wait_catalog(w / "svc" / "out", "notes-only", "failed", 300)
    res = _sh(RUNS[documented], world)
    if documented.startswith("curate server retry"):
        assert "marked for a retry" in res.stdout
        deadline = time.monotonic() + 300
        while Catalog(w / "svc" / "out").entries()["notes-only"]["flow_run_id"] == failed["flow_run_id"]:
            assert time.monotonic() < deadline, "the next watch did not start the backfill again"
            time.sleep(1)
    elif documented == "make demo":
        assert (w / "out" / "manifests" / "default" / "v0001.json").is_file() and "balanced" in res.stdout
    elif documented.startswith("curate compare-mixtures"):
        assert len(list((w / "out" / "manifests" / "default").glob("v000[1-5].json"))) == 5
    elif documented == "touch landing/<name>/_READY":  # the watch schedule (every 10 s) picks it up by itself
        _wait_catalog(w / "svc" / "out", "legal-x", "done", 300)
    elif documented == "curate server down":
        assert "stopped" in res.stdout


@pytest.mark.parametrize("documented", runnable("demo"))
def test_documented_command_runs(documented, world):
    check_documented_command(documented, world)


def _wait_catalog(work: Path, name: str, status: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = Catalog(work).entries().get(name, {})
        if entry.get("status") == status:
            return entry
        time.sleep(1)
    logs = "".join(f"\n--- {log.name}:\n" + log.read_text(errors="replace")[-3000:]
                   for log in sorted((work.parent / ".curate-server").glob("*.log")))
    pytest.fail(f"{name} did not become {status} in {timeout} s: {Catalog(work).entries().get(name)}{logs}")


def test_the_readme_python_blocks_run_as_scripts(world):
    """Each Python block of the README, as written, saved as a script and run the way a user runs it (the loader's
    workers are spawned: they import the script), in a folder whose out/ is the demo's work root."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS[0].read_text(), re.S)
    demo = world["w"] / "out"
    if not (demo / "manifests").is_dir():
        pytest.skip("needs the work root of `make demo` (run above)")
    assert blocks
    for k, block in enumerate(blocks):
        script = world["w"] / f"readme_example_{k}.py"
        script.write_text(block.replace("...  #", "pass  #") + "\n    print('steps', step + 1, 'state', sorted(state))\n")
        res = subprocess.run([sys.executable, str(script)], cwd=world["w"], env={**world["env"], "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "steps" in res.stdout and "Traceback" not in res.stderr


def test_make_test_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's test command"
    assert re.search(r"^test: install\n\t\$\(PY\) -m pytest", (REPO / "Makefile").read_text(), re.M)


def test_the_fast_tier_starts_no_server():
    """`make test-fast` leaves out every test that asks for the Prefect harness or runs the CLI's flows."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "not slow and not server",
                          "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    collected = [line.split("::")[0] for line in out.splitlines() if "::" in line]
    assert collected and not {"tests/test_flow.py", "tests/test_mapping.py", "tests/test_service.py"} & set(collected)
    for f in set(collected):
        text = (REPO / f).read_text()
        for name in re.findall(r"def (test_\w+)\(([^)]*)\)", text):
            if "prefect_harness" in name[1]:
                assert f"{f}::{name[0]}" not in out, f"{f}::{name[0]} starts a server but is in the fast tier"


def test_the_compose_file_runs_the_tested_commands():
    """No Docker engine runs here (`docker compose` needs one): the file is checked instead. Its worker runs the
    commands tested above, with every variable deploy/prefect.yaml requires, and the server is closed."""
    import yaml

    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    command = " ".join(worker["command"].split())
    assert "prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml" in command
    assert "prefect worker start --pool curate" in command
    required = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())["build"][0]
    names = required["curate.flows.deploy_checks.require_environment"]["names"]
    assert set(names) <= set(worker["environment"]), set(names) - set(worker["environment"])
    server = compose["services"]["server"]["environment"]
    assert server["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert "PREFECT_SERVER_API_AUTH_STRING" in server and server["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] != "*"
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        env = {**os.environ, "POSTGRES_PASSWORD": "x", "PREFECT_AUTH": "u:p"}
        res = subprocess.run(["docker", "compose", "-f", "deploy/docker-compose.yml", "config"], cwd=REPO, env=env,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr

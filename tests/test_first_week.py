"""What a team hits in its first week, as it would check it: a corpus under a name the work root already holds is
refused with nothing changed, Ctrl-C and SIGTERM stop a run at once and the next run resumes it, a run that keeps
nothing fails with the likely fix, a mistake is one line before any server, the service refuses a bad landing once,
and the warnings a person would want."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE

BIN = Path(sys.executable).parent
TINY = "tokenize:\n  vocab_size: 1000\nrunner:\n  workers: 1\n"


def _env(**extra) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}, "COLUMNS": "80", **extra}


def _curate(tmp: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    cfg = tmp / "tiny.yaml"
    cfg.write_text(TINY)
    return subprocess.run([str(BIN / "curate"), *args, "--config", str(cfg)], env=env or _env(), capture_output=True,
                          text=True, timeout=600, **kw)


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def legal_root(tmp_path_factory):
    """A work root holding the sample's legal corpus, curated once (and what that run printed)."""
    tmp = tmp_path_factory.mktemp("first-week")
    res = _curate(tmp, "run", f"legal={SAMPLE / 'legal.jsonl.gz'}", "--out", str(tmp / "out"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return tmp, res


@pytest.mark.slow
def test_a_corpus_under_a_name_the_work_root_holds_is_refused_and_changes_nothing(legal_root):
    """Once, the refused run had written the corpus's index (and its parts, over the original's): the next manifest
    lost 95% of the corpus."""
    tmp, _ = legal_root
    out = tmp / "out"
    before = _tree(out)
    manifest = json.loads((out / "manifests" / "default" / "v0001.json").read_text())
    t0 = time.perf_counter()
    res = _curate(tmp, "run", f"legal={SAMPLE / 'code.jsonl.gz'}", "--out", str(out))
    assert res.returncode == 2 and "already curated" in res.stderr and "legal-2=PATH" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr and len(res.stderr.strip().splitlines()) <= 3
    assert time.perf_counter() - t0 < 60, "refused before ingest, not after it"
    assert _tree(out) == before, "a refused corpus changes nothing in the work root"
    res = _curate(tmp, "mix", "--out", str(out))
    assert res.returncode == 0, res.stderr
    again = json.loads((out / "manifests" / "default" / "v0001.json").read_text())
    assert again == manifest and "unchanged" in res.stdout, "the next mix is the same version, every token there"
    # the same content under the same name is a resume, not a collision
    res = _curate(tmp, "run", f"legal={SAMPLE / 'legal.jsonl.gz'}", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_watch_refuses_a_taken_name_once_and_then_says_so():
    from curate.tasks.ingest.landing import LandedCorpus, plan_watch

    landed = [LandedCorpus("legal", "/l/legal", True, "f1", 1, 10), LandedCorpus("ok", "/l/ok", True, "f2", 1, 10)]
    taken = {"legal": "corpus 'legal' is already curated with other content"}
    plan = plan_watch(landed, {}, taken=lambda c: taken.get(c.name))
    assert [c.name for c in plan.trigger] == ["ok"] and plan.refused == [("legal", taken["legal"])]
    catalog = {"legal": {"status": "refused", "fingerprint": "f1", "refused": {"fingerprint": "f1", "why": taken["legal"]}}}
    plan = plan_watch(landed[:1], catalog, taken=lambda c: taken.get(c.name))
    assert not plan.refused and plan.skipped == [("legal", f"refused earlier: {taken['legal']}")]
    changed = [LandedCorpus("legal", "/l/legal", True, "f9", 1, 10)]  # landed again with other files: a new refusal
    assert plan_watch(changed, catalog, taken=lambda c: taken.get(c.name)).refused
    done = {"ok": {"status": "done", "fingerprint": "f2"}}  # a done corpus whose folder changed: refused once
    plan = plan_watch([LandedCorpus("ok", "/l/ok", True, "f3", 1, 10)], done)
    assert plan.refused and "changed after" in plan.refused[0][1]
    done["ok"]["refused"] = {"fingerprint": "f3", "why": plan.refused[0][1]}
    assert not plan_watch([LandedCorpus("ok", "/l/ok", True, "f3", 1, 10)], done).refused


@pytest.mark.server
def test_a_run_that_keeps_nothing_fails_with_the_likely_fix(tmp_path):
    src = tmp_path / "body.jsonl"
    src.write_text("".join(json.dumps({"id": f"b{i}", "body": f"a document about rivers, number {i}. " * 9}) + "\n"
                           for i in range(20)))
    res = _curate(tmp_path, "run", f"body={src}", "--out", str(tmp_path / "out"))
    assert res.returncode == 1, res.stdout[-1500:] + res.stderr[-1500:]
    assert "no document was kept" in res.stderr and "ingest.text_field" in res.stderr and "body" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr


@pytest.mark.parametrize("mistake", ["config key", "yaml", "missing path", "a/b=PATH", "empty name"])
def test_a_mistake_is_one_line_before_any_server(tmp_path, mistake):
    """Said before a server starts: with PREFECT_API_URL naming a server that is not there, the mistake, not the
    server, is what is reported."""
    (tmp_path / "typo.yaml").write_text("ingest:\n  batchsize: 10\n")
    (tmp_path / "bad.yaml").write_text("ingest: [unclosed\n")
    (tmp_path / "a").mkdir()
    args = {"config key": [str(SAMPLE / "legal.jsonl.gz"), "--config", str(tmp_path / "typo.yaml")],
            "yaml": [str(SAMPLE / "legal.jsonl.gz"), "--config", str(tmp_path / "bad.yaml")],
            "missing path": [str(tmp_path / "nope.jsonl")],
            "a/b=PATH": [f"a/b={SAMPLE / 'legal.jsonl.gz'}"],
            "empty name": [f"={SAMPLE / 'legal.jsonl.gz'}"]}[mistake]
    res = subprocess.run([str(BIN / "curate"), "run", *args, "--out", str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=120, env=_env(PREFECT_API_URL="http://127.0.0.1:9/api"))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) <= 3 and lines[0].startswith("error:"), res.stdout + res.stderr
    assert "not reachable" not in res.stderr and "Traceback" not in res.stderr
    want = {"config key": "batchsize", "yaml": "YAML", "missing path": "input not found", "a/b=PATH": "invalid corpus name",
            "empty name": "input not found"}[mistake]
    assert want in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def _interrupt_at(tmp: Path, work: str, marker: str, sig: int) -> tuple[float, subprocess.CompletedProcess]:
    """`curate run` in its own process group, sent `sig` (to the group, as a terminal sends Ctrl-C) once a file
    whose path ends with `marker` is committed; (seconds from the signal to its exit, the finished process)."""
    log = tmp / f"{work}.commits"
    log.write_text("")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(TINY)
    proc = subprocess.Popen([str(BIN / "curate"), "run", f"legal={SAMPLE / 'legal.jsonl.gz'}",
                             f"code={SAMPLE / 'code.jsonl.gz'}", "--out", str(tmp / work), "--config", str(cfg)],
                            env=_env(CURATE_COMMIT_LOG=str(log)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(line.endswith(marker) for line in log.read_text().splitlines()):
        assert proc.poll() is None and time.monotonic() < deadline, f"{marker} was never committed"
        time.sleep(0.05)
    t0 = time.monotonic()
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return time.monotonic() - t0, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _shards(root: Path) -> dict[str, str]:
    return {k: v for k, v in _tree(root).items() if k.startswith(("tokens/", "tokenizer/"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The shards and tokenizer of an uninterrupted run of legal and code."""
    tmp = tmp_path_factory.mktemp("reference")
    res = _curate(tmp, "run", f"legal={SAMPLE / 'legal.jsonl.gz'}", f"code={SAMPLE / 'code.jsonl.gz'}", "--out",
                  str(tmp / "ref"))
    assert res.returncode == 0, res.stderr[-2000:]
    return _shards(tmp / "ref")


@pytest.mark.slow
@pytest.mark.parametrize("marker,sig", [(".done.json", signal.SIGINT), ("tokenizer.model", signal.SIGTERM)])
def test_ctrl_c_and_sigterm_stop_a_run_at_once_and_the_next_run_resumes_it(tmp_path, reference, marker, sig):
    seconds, stopped = _interrupt_at(tmp_path, "work", marker, sig)
    assert seconds < 10 and stopped.returncode == (130 if sig == signal.SIGINT else 143), (seconds, stopped.stderr)
    told = [line for line in stopped.stderr.strip().splitlines() if line.strip()]
    assert len(told) == 1 and "resumes" in told[0] and "Traceback" not in stopped.stdout, stopped.stderr
    time.sleep(2)  # its workers exit with it
    resumed = _curate(tmp_path, "run", f"legal={SAMPLE / 'legal.jsonl.gz'}", f"code={SAMPLE / 'code.jsonl.gz'}",
                      "--out", str(tmp_path / "work"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _shards(tmp_path / "work") == reference


@pytest.mark.slow
def test_what_the_run_says_fits_80_columns_and_names_its_manifest_and_runner(legal_root):
    tmp, res = legal_root
    assert "runner: 1 local worker process" in res.stdout
    assert f"manifest: {tmp / 'out' / 'manifests' / 'default' / 'v0001.json'}" in res.stdout.replace("\n", "")
    assert ".docs.parquet" not in res.stdout, "progress says corpus and file, not paths"
    assert all(len(line) <= 80 for line in res.stdout.splitlines())
    report = json.loads((tmp / "out" / "report.json").read_text())
    assert (tmp / "out" / report["run_record"]).is_file()


def test_heavy_losses_and_unsure_domains_are_warned():
    from curate.schemas.report import ClassifyReport
    from curate.tasks.classify.classify import heavy_losses

    rep = ClassifyReport(corpus="legal", docs_by_domain={"legal": 100, "code": 10}, domains={"legal": 21, "code": 9},
                         rule_drops={"legal": {"gopher_repetition": 47, "c4_min_sentences": 32}, "code": {"x": 1}},
                         kept_mixed={"code": 6})
    warnings = heavy_losses("legal", rep, 0.5)
    assert len(warnings) == 2
    assert "79% of its 100 legal documents" in warnings[0] and "gopher_repetition 47" in warnings[0]
    assert "67% of its 9 kept code documents are of uncertain domain" in warnings[1]
    assert not heavy_losses("legal", rep, 0.9)


@pytest.mark.slow
def test_a_landed_corpus_under_a_name_the_work_root_holds_is_refused_by_the_watch(legal_root, tmp_path):
    """Once, the watch started a backfill for a name the dedup index held, which then failed (and said NAME=PATH)."""
    import shutil

    from curate.flows.service import _taken_in
    from curate.tasks.ingest.landing import LandedCorpus

    out = legal_root[0] / "out"
    (tmp_path / "legal").mkdir()
    shutil.copy(SAMPLE / "code.jsonl.gz", tmp_path / "legal" / "legal.jsonl.gz")
    taken = _taken_in(str(out), None)
    why = taken(LandedCorpus("legal", str(tmp_path / "legal"), True, "f", 1, 1))
    assert why and "already curated" in why and "a folder legal-2 in a landing folder" in why
    (tmp_path / "same").mkdir()
    shutil.copy(SAMPLE / "legal.jsonl.gz", tmp_path / "same" / "legal.jsonl.gz")
    assert taken(LandedCorpus("legal", str(tmp_path / "same"), True, "f", 1, 1)) is None, "the same files: a resume"
    assert taken(LandedCorpus("other", str(tmp_path / "legal"), True, "f", 1, 1)) is None

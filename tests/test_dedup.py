"""Dedup on real text: datasketch parity, near-duplicate families, cross-corpus, re-runs, bad input."""
import gzip
import hashlib
import importlib.util
import json
import subprocess
import sys
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from curate.schemas.config import DedupConfig, IngestConfig
from curate.schemas.report import Part
from curate.tasks.dedup.dedup import dedup_corpus, near_candidates_of, prepare_near, sign_part
from curate.tasks.engine.verdicts import rejects as verdict_rejects
from curate.tasks.engine.verdicts import verdicts_path
from curate.tasks.dedup.index import DedupIndexError, index_lock
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
from curate.tasks.dedup.minhash import SCHEME, MinHasher, shingle_hash, shingles_of
from tests.conftest import REPO, head_lines

BENCH = REPO.parent / "shared" / "bench" / "make_neardups.py"


def _neardups():
    spec = importlib.util.spec_from_file_location("make_neardups", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_corpus(work, name, path, cfg=DedupConfig(), groups=0, ingest=IngestConfig()):
    """Ingest, sign and dedup one file; with `groups`, the near-duplicate pairs come from that many band groups (what
    the flow maps across workers), else from the serial path."""
    parts = ingest_file(InputFile(name, str(path), path.name), ingest, work).parts
    for part in parts:
        sign_part(part, cfg, work)
    if not groups:
        return dedup_corpus(name, parts, cfg, work)
    bands = prepare_near(name, parts, cfg, work, groups)
    pairs = [near_candidates_of(name, parts, cfg, str(work), lo, hi) for lo, hi in bands]
    return dedup_corpus(name, parts, cfg, work, pairs or None)


def parts_of(work, name):
    return [Part(corpus=name, docs_path=p.relative_to(work).as_posix(), rows=pq.read_metadata(p).num_rows)
            for p in sorted((work / "ingest" / name).glob("*.docs.parquet"))]


def rejects(work, name):
    """Dedup's rejects as a person reads them: its verdicts' rows not kept, with source, line and excerpt."""
    return [r for p in parts_of(work, name) for r in verdict_rejects(work, "dedup", p).to_pylist()]


def kept_ids(work, name):
    return [v["id"] for p in parts_of(work, name) for v in pq.read_table(verdicts_path(work, "dedup", p)).to_pylist()
            if v["kept"]]


def write_jsonl_gz(path, records):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def test_signatures_equal_datasketch_on_real_text(shared_corpora):
    texts = [json.loads(x)["text"] for x in head_lines(shared_corpora / "code.jsonl.gz", 12)]
    texts += ["too short", ""]
    hasher = MinHasher(chunk_shingles=256)  # small chunks: the huge-document path runs too
    sigs, counts = hasher.signatures(texts)
    assert counts.max() > 256 and counts[-1] == 0
    for text, sig in zip(texts, sigs):
        ref = MinHash(num_perm=128, seed=1, scheme=SCHEME, hashfunc=shingle_hash)
        ref.update_batch(shingles_of(text, 5))
        assert np.array_equal(ref.hashvalues, sig)
    lean = hasher.lean(sigs[0])
    ref = MinHash(num_perm=128, seed=1, scheme=SCHEME, hashfunc=shingle_hash)
    ref.update_batch(shingles_of(texts[0], 5))
    assert lean.jaccard(ref) == 1.0


@pytest.fixture(scope="module")
def neardup_set(tmp_path_factory, shared_corpora):
    out = tmp_path_factory.mktemp("neardups")
    subprocess.run([sys.executable, str(BENCH), str(out), str(shared_corpora / "literature.jsonl.gz"),
                    str(shared_corpora / "legal.jsonl.gz"), "--docs", "500", "--dup-frac", "0.3"],
                   check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(x) for x in gzip.open(out / "docs.jsonl.gz", "rt")]
    pairs = [json.loads(x) for x in open(out / "pairs.jsonl")]
    return out / "docs.jsonl.gz", records, pairs


def test_near_duplicate_families_are_found_and_unrelated_text_is_not_merged(tmp_path, neardup_set):
    path, records, pairs = neardup_set
    rep = run_corpus(tmp_path, "set", path)
    assert rep.docs_in == len(records) == rep.kept + rep.rejected
    assert rep.near_duplicates > 50
    rej = rejects(tmp_path, "set")
    rep_of = {r["id"]: r["duplicate_of"] for r in rej}
    kept = set(kept_ids(tmp_path, "set"))
    assert all(k in kept for k in rep_of.values()), "every reject points at a kept twin"
    positive = [p for p in pairs if p["jaccard"] >= 0.8]
    same = sum(rep_of.get(p["a"], p["a"]) == rep_of.get(p["b"], p["b"]) for p in positive)
    assert same / len(positive) >= 0.9
    mod, text = _neardups(), {r["id"]: r["text"] for r in records}
    near = [r for r in rej if r["reason"] == "near_duplicate"]
    true_j = [mod.jaccard(mod.shingles(text[r["id"]]), mod.shingles(text[r["duplicate_of"]])) for r in near]
    assert sum(j >= 0.7 for j in true_j) / len(near) >= 0.95
    assert all(r["excerpt"] and 0.7 <= r["similarity"] <= 1.0 and r["source_file"] == path.name for r in near)


def test_second_corpus_copies_are_removed_and_first_is_untouched(tmp_path, shared_corpora):
    lines = [json.loads(x) for x in head_lines(shared_corpora / "literature.jsonl.gz", 120)]
    first = write_jsonl_gz(tmp_path / "first.jsonl.gz", lines[:80])
    copies = [{"id": f"copy-{r['id']}", "text": r["text"].replace(" the ", " the very ", 2)} for r in lines[:20]]
    exact = [{"id": f"same-{r['id']}", "text": r["text"]} for r in lines[20:25]]
    second = write_jsonl_gz(tmp_path / "second.jsonl.gz", copies + exact + lines[80:120])
    work = tmp_path / "w"
    run_corpus(work, "first", first)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (work / "dedup" / "first").iterdir()}
    rep = run_corpus(work, "second", second)
    assert rep.near_duplicates == 20 and rep.exact_duplicates == 5 and rep.kept == 40
    for r in rejects(work, "second"):
        assert r["duplicate_of"] == r["id"].split("-", 1)[1]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (work / "dedup" / "first").iterdir()}
    assert after == before
    registry = json.loads((work / "dedup" / "index" / "registry.json").read_text())
    assert [c["name"] for c in registry["corpora"]] == ["first", "second"]
    # a re-run is a no-op; a fresh work root gives identical decisions and bytes
    again = run_corpus(work, "second", second)
    assert again.reused and again.kept == rep.kept
    fresh = tmp_path / "fresh"
    run_corpus(fresh, "first", first)
    run_corpus(fresh, "second", second)
    verdicts = sorted((work / "dedup" / "second").glob("*.verdicts.parquet"))
    assert verdicts and [p.read_bytes() for p in verdicts] == \
        [(fresh / "dedup" / "second" / p.name).read_bytes() for p in verdicts]


def test_changed_content_under_an_old_name_is_refused(tmp_path, shared_corpora):
    lines = [json.loads(x) for x in head_lines(shared_corpora / "legal.jsonl.gz", 30)]
    path = write_jsonl_gz(tmp_path / "c.jsonl.gz", lines[:20])
    run_corpus(tmp_path / "w", "c", path)
    write_jsonl_gz(path, lines[10:30])
    with pytest.raises(DedupIndexError, match="already in the dedup index with other content"):
        run_corpus(tmp_path / "w", "c", path)


def test_short_and_empty_corpora(tmp_path):
    words = write_jsonl_gz(tmp_path / "w.jsonl.gz", [{"id": f"{i}", "text": t} for i, t in
                                                      enumerate(["hello", "hello", "two words", "hello"])])
    rep = run_corpus(tmp_path / "a", "short", words)
    assert rep.too_short_for_minhash == 4 and rep.exact_duplicates == 2 and rep.near_duplicates == 0
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    rep = run_corpus(tmp_path / "a", "empty", empty)
    assert rep.docs_in == 0 and rep.kept == 0


def test_corrupt_or_missing_index_partition_is_a_clear_error(tmp_path, shared_corpora):
    lines = [json.loads(x) for x in head_lines(shared_corpora / "literature.jsonl.gz", 40)]
    a = write_jsonl_gz(tmp_path / "a.jsonl.gz", lines[:20])
    b = write_jsonl_gz(tmp_path / "b.jsonl.gz", lines[20:])
    work = tmp_path / "w"
    run_corpus(work, "a", a)
    band = work / "dedup" / "index" / "bands" / "band=03" / "a.parquet"
    valid = band.read_bytes()
    band.write_bytes((work / "dedup" / "index" / "bands" / "band=04" / "a.parquet").read_bytes())  # valid, another
    with pytest.raises(DedupIndexError, match=r"changed: .*band=03/a\.parquet is not the file its corpus registered"):
        run_corpus(work, "b", b)
    band.write_bytes(b"PAR1 garbage")
    with pytest.raises(DedupIndexError, match=r"changed: .*band=03/a\.parquet"):
        run_corpus(work, "b", b)
    band.write_bytes(valid)
    band.unlink()
    with pytest.raises(DedupIndexError, match=r"missing: .*band=03/a\.parquet"):
        run_corpus(work, "b", b)
    (work / "dedup" / "index" / "registry.json").write_text("{not json")
    with pytest.raises(DedupIndexError, match="registry is corrupt"):
        run_corpus(work, "b", b)


def test_second_run_on_the_same_work_root_waits_then_refuses(tmp_path):
    held, release = threading.Event(), threading.Event()

    def holder():
        with index_lock(tmp_path, 1):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(DedupIndexError, match="another run holds the dedup index lock"):
            with index_lock(tmp_path, 0.5):
                pass
    finally:
        release.set()
        t.join()
    with index_lock(tmp_path, 0.5):  # free again once the first run is done
        pass


def test_band_groups_give_the_serial_paths_decisions_byte_for_byte(tmp_path, neardup_set, shared_corpora,
                                                                   monkeypatch):
    """Candidates split by band partition (as across workers), merged by union-find: the same clusters, kept set,
    rejects and index as one process, within a corpus and against an earlier one; and the same when the pairs are
    measured a few documents' shingle sets at a time (40 groups: chunks of 5 documents)."""
    import curate.tasks.dedup.candidates as candidates

    path, _, _ = neardup_set
    lines = [json.loads(x) for x in head_lines(shared_corpora / "literature.jsonl.gz", 60)]
    copies = write_jsonl_gz(tmp_path / "copies.jsonl.gz", [{"id": f"c-{r['id']}", "text": r["text"].replace(
        " the ", " the very ", 2)} for r in lines[:30]])
    first = write_jsonl_gz(tmp_path / "first.jsonl.gz", lines)
    out = {}
    for groups in (0, 3, 40):
        monkeypatch.setattr(candidates, "CHUNK_NODES", 5 if groups == 40 else 20_000)
        work = tmp_path / f"g{groups}"
        reps = [run_corpus(work, "set", path, groups=groups), run_corpus(work, "first", first, groups=groups),
                run_corpus(work, "copies", copies, groups=groups)]
        files = {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted((work / "dedup").rglob("*"))
                 if p.is_file() and p.suffix == ".parquet"}
        out[groups] = ([r.model_dump(exclude={"seconds"}) for r in reps], files)
        assert not list((work / "dedup").rglob(".near-*")), "the groups' hand-over files are removed"
    assert out[0][0][0]["near_duplicates"] > 50 and out[0][0][2]["near_duplicates"] == 30
    assert out[3] == out[0] and out[40] == out[0]


def test_an_input_in_many_parts_gets_the_same_decisions(tmp_path, neardup_set):
    """Ingest's bounded parts (here a file cut into several) change where documents sit, not what dedup decides."""
    path, _, _ = neardup_set
    whole = run_corpus(tmp_path / "whole", "set", path)
    rows = pq.read_metadata(next((tmp_path / "whole" / "ingest" / "set").glob("*.docs.parquet"))).num_rows
    split = run_corpus(tmp_path / "split", "set", path, groups=3,
                       ingest=IngestConfig(part_text_bytes=max(1, whole.docs_in * 200)))
    assert len(list((tmp_path / "split" / "ingest" / "set").glob("*.docs.parquet"))) >= 3 and rows == whole.docs_in
    assert len(split.verdicts_paths) >= 3
    assert kept_ids(tmp_path / "split", "set") == kept_ids(tmp_path / "whole", "set")
    fields = ("id", "reason", "duplicate_of", "similarity", "line")
    assert [[r[f] for f in fields] for r in rejects(tmp_path / "split", "set")] == \
        [[r[f] for f in fields] for r in rejects(tmp_path / "whole", "set")]
    assert split.model_dump(include={"kept", "near_duplicates", "exact_duplicates", "cluster_sizes"}) == \
        whole.model_dump(include={"kept", "near_duplicates", "exact_duplicates", "cluster_sizes"})

"""The classify stage on ingested parts of the bundled sample: annotations, rejects, PII, reuse."""
import hashlib

import pyarrow.parquet as pq
import pytest

from curate.schemas.annotations import ANNOTATION_SCHEMA
from curate.schemas.config import ClassifyConfig, IngestConfig, PiiConfig
from curate.tasks.classify.classify import classify_part
from curate.tasks.engine.verdicts import rejects as verdict_rejects
from curate.tasks.classify.models import resolve_models
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
from tests.conftest import SAMPLE


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """legal, code and literature sample files ingested once (plain functions, no Prefect)."""
    root = tmp_path_factory.mktemp("work")
    parts = {}
    for name in ("legal", "code", "literature"):
        res = ingest_file(InputFile(name, str(SAMPLE / f"{name}.jsonl.gz"), f"{name}.jsonl.gz"), IngestConfig(), root)
        parts[name] = res.parts[0]
    return root, parts


@pytest.fixture(scope="module")
def models():
    return resolve_models(ClassifyConfig())


def test_every_document_is_annotated_and_accounted_for(work, models):
    root, parts = work
    before = _sha(root / parts["legal"].docs_path)
    res = classify_part(parts["legal"], ClassifyConfig(), models, root)
    assert res.docs_in == res.kept + res.rejected and res.rejected > 0
    ann = pq.read_table(root / res.verdicts_path)
    docs = pq.read_table(root / parts["legal"].docs_path, columns=["id"])
    assert ann.schema.equals(ANNOTATION_SCHEMA) and ann.column("id").to_pylist() == docs.column("id").to_pylist()
    assert ann.column("row").to_pylist() == list(range(docs.num_rows))
    assert sum(ann.column("kept").to_pylist()) == res.kept
    rejects = verdict_rejects(root, "classify", parts["legal"]).to_pylist()
    assert len(rejects) == res.rejected and all(r["stage"] == "classify" for r in rejects)
    assert {r["reason"] for r in rejects} <= set(ClassifyConfig().rules["legal"])  # a rule's name is the reason
    assert all(r["detail"] and r["excerpt"] and r["line"] > 0 for r in rejects)
    assert res.domains.get("legal", 0) > 0.9 * res.kept
    assert sum(res.quality_hist) == res.docs_in
    assert _sha(root / parts["legal"].docs_path) == before, "classify never rewrites the documents"


def test_pii_is_redacted_in_the_annotations_and_counted(work, models):
    root, parts = work
    res = classify_part(parts["legal"], ClassifyConfig(), models, root)
    ann = pq.read_table(root / res.verdicts_path).to_pylist()
    redacted = [a for a in ann if a["text_redacted"]]
    assert res.pii["email"] == sum(a["pii_email"] for a in ann) > 10  # Debian copyright files name people
    assert all("<EMAIL>" in a["text_redacted"] and "@" not in a["text_redacted"].split("<EMAIL>")[0][-3:]
               for a in redacted if a["pii_email"])
    assert all(a["text_redacted"] is None for a in ann if not any(a[f] for f in a if f.startswith("pii_")))


def test_drop_mode_rejects_documents_with_personal_data(work, models, tmp_path):
    root, parts = work
    cfg = ClassifyConfig(pii=PiiConfig(mode="drop"))
    res = classify_part(parts["legal"], cfg, models, root)
    assert res.by_reason.get("pii", 0) > 0
    rejects = [r for r in verdict_rejects(root, "classify", parts["legal"]).to_pylist() if r["reason"] == "pii"]
    assert all("email" in r["detail"] or "phone" in r["detail"] for r in rejects)


def test_quality_threshold_rejects_with_its_reason(work, models):
    root, parts = work
    res = classify_part(parts["literature"], ClassifyConfig(min_quality_score=0.999), models, root)
    assert res.by_reason.get("low_quality_score", 0) > 0
    ann = pq.read_table(root / res.verdicts_path).to_pylist()
    assert all(a["quality_score"] < 0.999 for a in ann if a["reason"] == "low_quality_score")
    assert all(0.0 <= a["quality_score"] <= 1.0 for a in ann)


def test_code_is_judged_by_code_rules_only(work, models):
    root, parts = work
    res = classify_part(parts["code"], ClassifyConfig(), models, root)
    assert res.domains.get("code", 0) >= 0.85 * res.docs_in
    assert res.kept >= 0.95 * res.docs_in  # prose rules (curly braces, punctuation) would drop most of it
    assert sum(res.docs_by_domain.values()) == res.docs_in and res.mixed <= res.docs_in


def test_code_a_model_never_learned_is_not_dropped_by_prose_rules(work, models, labeled_records, tmp_path):
    """A domain model trained without any code calls every source file prose; the code shape still keeps prose
    rules off it, and the run says per domain and rule what was dropped."""
    import dataclasses

    from curate.tasks.classify.fasttext_model import TrainParams, train
    from curate.tasks.classify.models import _sha256, domain_docs

    root, parts = work
    prose = [r for r in labeled_records.values() if r["domain"] != "code"]
    train(domain_docs(prose), TrainParams(max_chars=1000, windows=3), tmp_path, source="no code")
    blind = dataclasses.replace(models, domain_path=str(tmp_path / "model.bin"),
                                domain_sha=_sha256(tmp_path / "model.bin"), domain_temperature=1.0)
    cfg = ClassifyConfig(domains=["legal", "literature", "reference", "techdocs"])
    res = classify_part(parts["code"], cfg, blind, root)
    ann = pq.read_table(root / res.verdicts_path).to_pylist()  # before the next run rewrites the part's outputs
    unprotected = classify_part(parts["code"], cfg.model_copy(update={"code_shape": 1.0}), blind, root)
    assert "code" not in res.docs_by_domain and res.code_shaped == unprotected.rejected - res.rejected > 0
    assert res.kept >= 0.9 * res.docs_in, res.by_reason  # 69 of 76 measured (Python heavy with docstrings is prose-like)
    assert unprotected.kept < 0.7 * unprotected.docs_in, unprotected.by_reason  # what prose rules do to code
    assert sum(n for d in unprotected.rule_drops.values() for n in d.values()) == unprotected.rejected
    spared = [a for a in ann if a["judged_as"].endswith("+code")]
    assert len(spared) == res.code_shaped and all(a["code_shape"] >= cfg.code_shape and a["kept"] for a in spared)


def test_rerun_is_reused_and_output_is_byte_identical(work, models, tmp_path):
    root, parts = work
    cfg = ClassifyConfig(batch_size=16)
    first = classify_part(parts["code"], cfg, models, root)
    digest = _sha(root / first.verdicts_path)
    again = classify_part(parts["code"], cfg, models, root)
    assert again.reused and _sha(root / again.verdicts_path) == digest
    changed = classify_part(parts["code"], ClassifyConfig(batch_size=16, min_quality_score=0.01), models, root)
    assert not changed.reused
    # same input and config elsewhere: the same bytes
    other = tmp_path / "other"
    res = ingest_file(InputFile("code", str(SAMPLE / "code.jsonl.gz"), "code.jsonl.gz"), IngestConfig(), other)
    fresh = classify_part(res.parts[0], cfg, models, other)
    assert _sha(other / fresh.verdicts_path) == digest

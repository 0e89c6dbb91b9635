"""Classify: per document part, domain and quality scores (fastText), heuristic rules and PII.

`classify_part` is the plain function. It reads a documents part, writes an annotations part beside it
(schemas/annotations.py) and a rejects part, and never rewrites the documents. A part whose input
fingerprint, classify config and model hashes match a completed earlier run is reused.
"""
from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.schemas.annotations import ANNOTATION_SCHEMA, LOW_QUALITY_REASON, PII_REASON, PII_TYPES, QUALITY_LABEL_HIGH
from curate.schemas.config import ClassifyConfig
from curate.schemas.documents import REJECT_SCHEMA, reject_row
from curate.schemas.report import ClassifyPartResult
from curate.schemas.work_root import WorkRoot, part_name
from curate.tasks.classifier import LABEL_PREFIX, load_model, model_text, predict_probs
from curate.tasks.text_shape import code_shape
from curate.tasks.classify_models import QUALITY_LABELS, ModelRefs, rule_set
from curate.tasks.pii import redact
from curate.tasks.quality_rules import RuleSet
from curate.tasks.stage_task import PartStage, docs_part_size, stage_task
from curate.tasks.workdir import atomic_path, file_fingerprint, open_parquet

STAGE = "classify"
HIST_BINS = 10


@dataclass(frozen=True)
class PartRef:
    corpus: str
    docs_path: str  # relative to the work root


@functools.lru_cache(maxsize=4)
def _model(path: str, labels: tuple[str, ...], what: str):
    # one load per worker process and model file
    return load_model(path, labels, what=what)


@functools.lru_cache(maxsize=4)
def _rules(cfg_json: str) -> RuleSet:
    return rule_set(ClassifyConfig.model_validate_json(cfg_json))


def predict_batch(texts: list[str], cfg: ClassifyConfig, models: ModelRefs) -> dict[str, list]:
    """Domain (top two, calibrated probabilities over windows across each document) and quality score (the first
    window) for a batch."""
    domains = sorted(cfg.domains)
    dom = _model(models.domain_path, tuple(domains), "domain model")
    qual = _model(models.quality_path, tuple(sorted(QUALITY_LABELS)), "quality model")
    probs = predict_probs(dom, texts, domains, cfg.window_chars, cfg.windows, models.domain_temperature)
    order = np.argsort(-probs, axis=1, kind="stable")
    q_labels, q_probs = qual.predict([model_text(t, cfg.max_chars) for t in texts], k=2)
    n = len(LABEL_PREFIX)
    out: dict[str, list] = {"domain": [], "domain_prob": [], "domain_runner_up": [], "runner_up_prob": [],
                            "domain_mixed": [], "quality_score": []}
    for i, (qlabs, qprobs) in enumerate(zip(q_labels, q_probs)):
        best, second = order[i, 0], order[i, 1]
        out["domain"].append(domains[best])
        out["domain_prob"].append(float(probs[i, best]))
        out["domain_runner_up"].append(domains[second])
        out["runner_up_prob"].append(float(probs[i, second]))
        out["domain_mixed"].append(bool(probs[i, best] < cfg.min_domain_confidence))
        hq = next((float(p) for lab, p in zip(qlabs, qprobs) if lab[n:] == QUALITY_LABEL_HIGH), 0.0)
        out["quality_score"].append(min(1.0, hq))
    return out


def judged_as(domain: str, runner_up: str, mixed: bool) -> tuple[str, ...]:
    """The domains whose shared rules judge a document: its own, with its runner-up when it is unsure."""
    return (domain, runner_up) if mixed else (domain,)


def part_paths(work_root: Path, ref: PartRef) -> tuple[Path, Path, Path]:
    stem = part_name(ref.docs_path)
    base = WorkRoot(work_root).stage(STAGE, ref.corpus) / stem
    return (base.with_name(stem + ".annotations.parquet"), base.with_name(stem + ".rejects.parquet"),
            base.with_name(stem + ".done.json"))


def _key(ref: PartRef, cfg: ClassifyConfig, models: ModelRefs, work_root: str | Path) -> dict:
    return {"fingerprint": file_fingerprint(Path(work_root) / ref.docs_path), "config": cfg.model_dump(mode="json"),
            "models": [models.domain_sha, models.quality_sha, models.domain_temperature]}


def classify_part(ref: PartRef, cfg: ClassifyConfig, models: ModelRefs, work_root: str | Path) -> ClassifyPartResult:
    """Domain, quality, rules and PII of one documents part (reused when part, settings and models are the same)."""
    return CLASSIFY.run(ref, cfg, models, work_root)


def _classify(ref: PartRef, cfg: ClassifyConfig, models: ModelRefs, work_root: str | Path,
              key: dict) -> ClassifyPartResult:
    work_root = Path(work_root)
    src = work_root / ref.docs_path
    ann_path, rej_path, _ = part_paths(work_root, ref)
    t0 = time.perf_counter()
    rules = _rules(cfg.model_dump_json())
    res = ClassifyPartResult(corpus=ref.corpus, docs_path=ref.docs_path,
                             annotations_path=str(ann_path.relative_to(work_root)),
                             rejects_path=str(rej_path.relative_to(work_root)))
    reasons, domains, pii_total, seen = Counter(), Counter(), Counter(), Counter()
    rule_drops: dict[str, Counter] = {}
    hist = np.zeros(HIST_BINS, dtype=np.int64)
    pf = open_parquet(src)
    with atomic_path(ann_path) as ann_tmp, atomic_path(rej_path) as rej_tmp:
        with pq.ParquetWriter(ann_tmp, ANNOTATION_SCHEMA, compression="zstd", compression_level=1,
                              use_dictionary=["domain", "domain_runner_up", "failed_rule", "reason"]) as ann_w, \
                pq.ParquetWriter(rej_tmp, REJECT_SCHEMA, compression="zstd") as rej_w:
            for batch in pf.iter_batches(batch_size=cfg.batch_size, columns=["id", "text", "lang", "source_file", "line"]):
                cols, rejects = _judge_batch(batch, ref.corpus, cfg, models, rules)
                ann_w.write_table(pa.Table.from_pydict(cols, schema=ANNOTATION_SCHEMA))
                if rejects:
                    rej_w.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))
                kept = np.asarray(cols["kept"], dtype=bool)
                res.docs_in += batch.num_rows
                res.text_bytes_in += int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)
                res.text_bytes += int(pc.sum(pc.filter(pc.binary_length(batch.column("text")), kept)).as_py() or 0)
                reasons.update(r["reason"] for r in rejects)
                domains.update(d for d, k in zip(cols["domain"], kept) if k)
                seen.update(cols["domain"])
                for d, rule in zip(cols["domain"], cols["failed_rule"]):
                    if rule:
                        rule_drops.setdefault(d, Counter())[rule] += 1
                res.mixed += sum(cols["domain_mixed"])
                res.code_shaped += sum(sh is not None and sh >= cfg.code_shape for sh in cols["code_shape"])
                pii_total.update({t: sum(cols[f"pii_{t}"]) for t in PII_TYPES})
                hist += np.histogram(np.asarray(cols["quality_score"]), bins=HIST_BINS, range=(0.0, 1.0))[0]
    res.rejected = sum(reasons.values())
    res.kept = res.docs_in - res.rejected
    res.by_reason = dict(sorted(reasons.items()))
    res.domains = dict(sorted(domains.items()))
    res.docs_by_domain = dict(sorted(seen.items()))
    res.rule_drops = {d: dict(sorted(c.items())) for d, c in sorted(rule_drops.items())}
    res.quality_hist = hist.tolist()
    res.pii = {t: n for t, n in sorted(pii_total.items()) if n}
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _judge_batch(batch: pa.RecordBatch, corpus: str, cfg: ClassifyConfig, models: ModelRefs,
                 rules: RuleSet) -> tuple[dict[str, list], list[dict]]:
    """Annotation columns for one batch, and reject rows for what it drops: the first failed rule of the
    document's predicted domain, else a quality score under the threshold, else (drop mode) personal data."""
    pii_on = cfg.pii.mode != "off"
    pii_kinds = frozenset(cfg.pii.types)
    texts = batch.column("text").to_pylist()  # the domain model reads windows across the whole document
    langs = batch.column("lang").to_pylist()
    cols: dict[str, list] = {**predict_batch(texts, cfg, models), "id": batch.column("id").to_pylist(),
                             "code_shape": [], "judged_as": [], "failed_rule": [], "kept": [], "reason": [],
                             "text_redacted": [], **{f"pii_{t}": [] for t in PII_TYPES}}
    rejects = []
    for i, text in enumerate(texts):
        judged = judged_as(cols["domain"][i], cols["domain_runner_up"][i], cols["domain_mixed"][i])
        failed = rules.first_failure(text, judged, langs[i])
        shape = None  # measured only where it can change the outcome: a document a rule would drop
        if failed and "code" not in judged:
            shape = code_shape(text)
            if shape >= cfg.code_shape:  # code-shaped: only rules code shares judge it, so no prose rule drops it
                judged += ("code",)
                failed = rules.first_failure(text, judged, langs[i])
        cols["code_shape"].append(shape)
        cols["judged_as"].append("+".join(judged))
        redacted, found = redact(text, pii_kinds) if pii_on else (text, Counter())
        reason = detail = None
        if failed:
            reason, detail = failed
        elif cols["quality_score"][i] < cfg.min_quality_score:
            reason, detail = LOW_QUALITY_REASON, f"quality score {cols['quality_score'][i]:.3f} < {cfg.min_quality_score}"
        elif found and cfg.pii.mode == "drop":
            reason, detail = PII_REASON, ", ".join(f"{k}: {v}" for k, v in sorted(found.items()))
        cols["failed_rule"].append(failed[0] if failed else None)
        cols["kept"].append(reason is None)
        cols["reason"].append(reason)
        cols["text_redacted"].append(redacted if found and cfg.pii.mode == "redact" else None)
        for t in PII_TYPES:
            cols[f"pii_{t}"].append(found.get(t, 0))
        if reason:
            rejects.append(reject_row(STAGE, corpus, batch.column("source_file")[i].as_py(),
                                      batch.column("line")[i].as_py(), cols["id"][i], reason, detail, text))
    return cols, rejects


CLASSIFY = PartStage(
    STAGE, ClassifyPartResult, _classify, _key,
    done_path=lambda ref, cfg, models, work_root: part_paths(Path(work_root), ref)[2],
    outputs=lambda res, work_root: [work_root / res.annotations_path, work_root / res.rejects_path],
    describe=lambda r: f"{r.docs_path}: {r.docs_in} in, {r.kept} kept",
    size=docs_part_size)
classify_reused = CLASSIFY.reused


def make_classify_task(retries: int):
    """The Prefect task, mapped over document parts (processes: fastText and rules are CPU-bound)."""
    return stage_task(classify_part, "classify-part", "classify-{ref.corpus}-{ref.docs_path}", retries)

"""Classify: per document part, domain and quality scores (fastText), heuristic rules and PII.

`classify_part` is the plain function. It reads the documents of an ingest part that the stages before it kept and
writes its verdicts beside it, one row per document with its annotations (schemas/annotations.py); the documents
are never rewritten. A part whose documents, earlier verdicts, classify config and model hashes match a completed
earlier run is reused.
"""
from __future__ import annotations

import functools
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.schemas.annotations import ANNOTATION_SCHEMA, LOW_QUALITY_REASON, PII_REASON, PII_TYPES, QUALITY_LABEL_HIGH
from curate.schemas.config import ClassifyConfig
from curate.schemas.report import ClassifyPartResult, ClassifyReport, Part
from curate.schemas.work_root import WorkRoot
from curate.tasks.classify.decide import DECISION, domain_order
from curate.tasks.classify.fasttext_model import LABEL_PREFIX, load_model, model_text, predict_probs
from curate.tasks.classify.models import QUALITY_LABELS, ModelRefs, local_models, publish_models, resolve_models, rule_set
from curate.tasks.classify.pii import redact
from curate.tasks.classify.rules import RuleSet
from curate.tasks.engine.files import atomic_path
from curate.tasks.engine.stage import Job, Run, Stage, part_step
from curate.tasks.engine.verdicts import alive, documents, verdicts_key, verdicts_path
from curate.tasks.text.shape import code_shape
from curate.tasks.text.words import TOKENS

STAGE = "classify"
HIST_BINS = 10


@functools.lru_cache(maxsize=4)
def _model(path: str, labels: tuple[str, ...], what: str):
    # one load per worker process and model file
    return load_model(path, labels, what=what)


@functools.lru_cache(maxsize=4)
def _rules(cfg_json: str) -> RuleSet:
    return rule_set(ClassifyConfig.model_validate_json(cfg_json))


def predict_batch(texts: list[str], cfg: ClassifyConfig, models: ModelRefs) -> dict[str, list]:
    """Domain (top two, calibrated probabilities over windows across each document; code first where most of a
    document is shaped like code) and quality score (the first window) for a batch."""
    domains = sorted(cfg.domains)
    dom = _model(models.domain_path, tuple(domains), "domain model")
    qual = _model(models.quality_path, tuple(sorted(QUALITY_LABELS)), "quality model")
    probs = predict_probs(dom, texts, domains, cfg.window_chars, cfg.windows, models.domain_temperature)
    order = domain_order(probs, texts, domains, cfg.code_shape)
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


def _key(job: Job) -> dict:
    models = job.prepared
    return {**verdicts_key(job.root, job.unit, job.before),
            "config": job.settings.model_dump(mode="json", exclude={"warn_drop_rate"}),  # (a warning: no output)
            "models": [models.domain_sha, models.quality_sha, models.domain_temperature], "words": TOKENS,
            "domain_decision": DECISION}


def classify_part(part: Part, cfg: ClassifyConfig, models: ModelRefs, work_root: str | Path,
                  before: tuple[str, ...] = ()) -> ClassifyPartResult:
    """Domain, quality, rules and PII of the documents of one part that the stages `before` kept (reused when the
    part, its verdicts, the settings and the models are the same)."""
    return CLASSIFY_PART.run(Job(part, cfg, str(work_root), models, tuple(before)))


class _Tally:
    """A part's counts, added a batch at a time."""

    def __init__(self) -> None:
        self.reasons, self.domains, self.pii, self.seen = Counter(), Counter(), Counter(), Counter()
        self.kept_mixed, self.langs, self.kept_langs = Counter(), Counter(), Counter()
        self.rule_drops: dict[str, Counter] = {}
        self.lang_rule_drops: dict[str, Counter] = {}
        self.hist = np.zeros(HIST_BINS, dtype=np.int64)
        self.docs_in = self.text_bytes_in = self.text_bytes = self.mixed = self.code_shaped = 0

    def add(self, cols: dict[str, list], texts: pa.Array, langs: list[str], cfg: ClassifyConfig) -> None:
        kept = np.asarray(cols["kept"], dtype=bool)
        lengths = pc.binary_length(texts)
        self.docs_in += len(kept)
        self.text_bytes_in += int(pc.sum(lengths).as_py() or 0)
        self.text_bytes += int(pc.sum(pc.filter(lengths, kept)).as_py() or 0)
        self.reasons.update(r for r in cols["reason"] if r)
        self.domains.update(d for d, k in zip(cols["domain"], kept) if k)
        self.seen.update(cols["domain"])
        self._count_drops(cols, langs, kept)
        self.mixed += sum(cols["domain_mixed"])
        self.kept_mixed.update(d for d, k, m in zip(cols["domain"], kept, cols["domain_mixed"]) if k and m)
        self.code_shaped += sum(sh is not None and sh >= cfg.code_shape for sh in cols["code_shape"])
        self.pii.update({t: sum(cols[f"pii_{t}"]) for t in PII_TYPES})
        self.hist += np.histogram(np.asarray(cols["quality_score"]), bins=HIST_BINS, range=(0.0, 1.0))[0]

    def _count_drops(self, cols: dict[str, list], langs: list[str], kept: np.ndarray) -> None:
        """Documents and kept ones per language; rule drops per domain and per language."""
        self.langs.update(langs)
        self.kept_langs.update(lang for lang, k in zip(langs, kept) if k)
        for d, lang, rule in zip(cols["domain"], langs, cols["failed_rule"]):
            if rule:
                self.rule_drops.setdefault(d, Counter())[rule] += 1
                self.lang_rule_drops.setdefault(lang, Counter())[rule] += 1

    def result(self, corpus: str, path: str, seconds: float) -> ClassifyPartResult:
        rejected = sum(self.reasons.values())
        return ClassifyPartResult(
            corpus=corpus, verdicts_path=path, docs_in=self.docs_in, kept=self.docs_in - rejected, rejected=rejected,
            by_reason=dict(sorted(self.reasons.items())), domains=dict(sorted(self.domains.items())),
            docs_by_domain=dict(sorted(self.seen.items())),
            rule_drops={d: dict(sorted(c.items())) for d, c in sorted(self.rule_drops.items())},
            docs_by_lang=dict(sorted(self.langs.items())), kept_by_lang=dict(sorted(self.kept_langs.items())),
            lang_rule_drops={k: dict(sorted(c.items())) for k, c in sorted(self.lang_rule_drops.items())},
            mixed=self.mixed, kept_mixed=dict(sorted(self.kept_mixed.items())), code_shaped=self.code_shaped, quality_hist=self.hist.tolist(),
            pii={t: n for t, n in sorted(self.pii.items()) if n}, text_bytes_in=self.text_bytes_in,
            text_bytes=self.text_bytes, seconds=round(seconds, 3))


def _classify(job: Job, key: dict) -> ClassifyPartResult:
    part, cfg, work_root = job.unit, job.settings, job.root
    out = verdicts_path(work_root, STAGE, part)
    t0 = time.perf_counter()
    rules = _rules(cfg.model_dump_json())
    models = local_models(job.prepared, job.work_root)
    tally = _Tally()
    with atomic_path(out) as tmp, pq.ParquetWriter(
            tmp, ANNOTATION_SCHEMA, compression="zstd", compression_level=1,
            use_dictionary=["domain", "domain_runner_up", "failed_rule", "reason"]) as writer:
        for rows, batch in documents(work_root, part, alive(work_root, part, job.before), ["id", "text", "lang"],
                                     cfg.batch_size):
            cols = _judge_batch(batch, cfg, models, rules)
            writer.write_table(pa.Table.from_pydict({"row": rows.tolist(), **cols}, schema=ANNOTATION_SCHEMA))
            tally.add(cols, batch.column("text"), batch.column("lang").to_pylist(), cfg)
    return tally.result(part.corpus, WorkRoot(work_root).relative(out), time.perf_counter() - t0)


def _judge_batch(batch: pa.RecordBatch, cfg: ClassifyConfig, models: ModelRefs, rules: RuleSet) -> dict[str, list]:
    """Annotation and verdict columns for one batch: a document is dropped by the first failed rule of its predicted
    domain, else a quality score under the threshold, else (drop mode) personal data."""
    texts = batch.column("text").to_pylist()  # the domain model reads windows across the whole document
    cols: dict[str, list] = {**predict_batch(texts, cfg, models), "id": batch.column("id").to_pylist(),
                             **{name: [] for name in ("code_shape", "judged_as", "failed_rule", "kept", "reason",
                                                      "detail", "text_redacted")},
                             **{f"pii_{t}": [] for t in PII_TYPES}}
    for i, (text, lang) in enumerate(zip(texts, batch.column("lang").to_pylist())):
        judged, failed, shape = _rules_verdict(text, lang, cols["domain"][i], cols["domain_runner_up"][i],
                                               cols["domain_mixed"][i], cfg, rules)
        redacted, found = redact(text, frozenset(cfg.pii.types)) if cfg.pii.mode != "off" else (text, Counter())
        reason, detail = failed or _score_or_pii(cols["quality_score"][i], found, cfg) or (None, None)
        for name, value in (("code_shape", shape), ("judged_as", "+".join(judged)),
                            ("failed_rule", failed[0] if failed else None), ("kept", reason is None),
                            ("reason", reason), ("detail", detail),
                            ("text_redacted", redacted if found and cfg.pii.mode == "redact" else None),
                            *((f"pii_{t}", found.get(t, 0)) for t in PII_TYPES)):
            cols[name].append(value)
    return cols


def _rules_verdict(text: str, lang: str, domain: str, runner_up: str, mixed: bool, cfg: ClassifyConfig,
                   rules: RuleSet) -> tuple[tuple[str, ...], tuple[str, str] | None, float | None]:
    """(the domains whose rules judged the document, the first rule it failed with its detail, its code shape). The
    shape is measured only where it can change the outcome, a document a rule would drop: a code-shaped one is judged
    only by the rules code shares, so no prose rule drops it."""
    judged = judged_as(domain, runner_up, mixed)
    failed = rules.first_failure(text, judged, lang)
    shape = None
    if failed and "code" not in judged:
        shape = code_shape(text)
        if shape >= cfg.code_shape:
            judged += ("code",)
            failed = rules.first_failure(text, judged, lang)
    return judged, failed, shape


def _score_or_pii(score: float, found: Counter, cfg: ClassifyConfig) -> tuple[str, str] | None:
    if score < cfg.min_quality_score:
        return LOW_QUALITY_REASON, f"quality score {score:.3f} < {cfg.min_quality_score}"
    if found and cfg.pii.mode == "drop":
        return PII_REASON, ", ".join(f"{k}: {v}" for k, v in sorted(found.items()))
    return None


CLASSIFY_PART = part_step(
    STAGE, __name__, ClassifyPartResult, _classify, _key,
    describe=lambda r: f"{r.docs_in:,} in, {r.kept:,} kept")


def _jobs(run: Run) -> list[Job]:
    """A job per part; the default models train here, once, before any task needs them."""
    models = resolve_models(run.cfg.classify)
    run.log(f"classify models: domain {models.domain_path}, quality {models.quality_path}")
    if run.url:  # workers on other machines fetch them from the work root
        models = publish_models(models, run.url)
    return run.part_jobs(run.cfg.classify, models)


def heavy_losses(corpus: str, rep: ClassifyReport, rate: float) -> list[str]:
    """Warnings a person would want: the rules dropping more than `rate` of a predicted domain's documents in a corpus
    (a rule eating a domain), and a domain whose kept documents are mostly of uncertain domain."""
    out = []
    for domain, seen in rep.docs_by_domain.items():
        drops = rep.rule_drops.get(domain, {})
        top = sorted(drops.items(), key=lambda kv: -kv[1])[:3]
        if seen and sum(drops.values()) > rate * seen:
            out.append(f"{corpus}: the rules dropped {sum(drops.values()) / seen:.0%} of its {seen:,} {domain} documents "
                       f"({', '.join(f'{r} {n:,}' for r, n in top)}): check classify.rules and rule_params for "
                       f"{domain} (classify.warn_drop_rate {rate})")
        kept = rep.domains.get(domain, 0)
        if kept and rep.kept_mixed.get(domain, 0) > rate * kept:
            out.append(f"{corpus}: {rep.kept_mixed[domain] / kept:.0%} of its {kept:,} kept {domain} documents are of "
                       f"uncertain domain (under classify.min_domain_confidence): the {domain} weight rests on guesses")
    return out


def _fold(run: Run, results: list) -> None:
    for rep in run.report.corpora:
        if rep.classify is not None:
            for warning in heavy_losses(rep.corpus, rep.classify, run.cfg.classify.warn_drop_rate):
                run.warn(warning)


CLASSIFY = Stage(STAGE, CLASSIFY_PART, _jobs, enabled=lambda cfg: cfg.classify.enabled, filter=True, fold=_fold,
                 summary=ClassifyReport)

"""The domain and quality models a run uses: the configured files, or the defaults trained from the
labeled seed set in data/ on first use and cached by the hash of that data and the training settings.

Quality labels are silver labels: a seed document is `hq` when it passes every heuristic rule of its
domain and `lq` when it fails one (procedure and its defence: data/README.md). The model turns the hard
rules into a score in [0, 1] that also ranks the documents the rules let through.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from schemas.annotations import QUALITY_LABEL_HIGH, QUALITY_LABEL_LOW
from schemas.config import ClassifyConfig
from tasks import _textscan, quality_rules
from tasks.classifier import ClassifierError, LabeledDoc, TrainParams, cached_model, family_of, load_model, \
    model_text, read_labeled, train
from tasks.quality_rules import RuleSet

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_LABELED = REPO_ROOT / "data" / "labeled" / "domain.jsonl.gz"
QUALITY_LABELS = (QUALITY_LABEL_HIGH, QUALITY_LABEL_LOW)


@dataclass(frozen=True)
class ModelRefs:
    """What the classify tasks need to load the models, and what identifies them in completion markers."""

    domain_path: str
    domain_sha: str
    quality_path: str
    quality_sha: str


def rule_set(cfg: ClassifyConfig) -> RuleSet:
    return RuleSet(cfg.rules, cfg.rule_params)


def domain_docs(records: list[dict], label_field: str = "domain") -> list[LabeledDoc]:
    return [LabeledDoc(str(r.get("id", i)), r["text"], r[label_field], family_of(r)) for i, r in enumerate(records)]


def quality_docs(records: list[dict], rules: RuleSet, domain_field: str = "domain") -> list[LabeledDoc]:
    """Silver labels: hq if the record passes every rule of its domain, lq if it fails one."""
    docs = []
    for i, r in enumerate(records):
        failed = rules.first_failure(r["text"], str(r.get(domain_field, "default")), str(r.get("lang", "en")))
        docs.append(LabeledDoc(str(r.get("id", i)), r["text"],
                               QUALITY_LABEL_LOW if failed else QUALITY_LABEL_HIGH, family_of(r)))
    return docs


def train_kind(kind: str, data: Path, out_dir: Path, cfg: ClassifyConfig, label_field: str = "domain",
               quantize: bool = False, params: TrainParams | None = None) -> dict:
    """Train the `kind` ('domain' or 'quality') model from a labeled JSONL into out_dir; returns its metrics."""
    params = params or TrainParams(max_chars=cfg.max_chars)
    if kind == "domain":
        docs = domain_docs(read_labeled(data, label_field), label_field)
    elif kind == "quality":
        docs = quality_docs(read_labeled(data, label_field), rule_set(cfg), label_field)
    else:
        raise ClassifierError(f"unknown classifier kind {kind!r}: use domain or quality")
    return train(docs, params, out_dir, source=str(data), quantize=quantize)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _rules_code_hash() -> str:
    """The rules' Python and the C statistics they read (their sources where present, else the built module)."""
    h = hashlib.sha256(inspect.getsource(quality_rules).encode())
    sources = [Path(_textscan.__file__).with_name(name) for name in ("textscan_rules.c", "textscan.h")]
    for path in sources if all(p.is_file() for p in sources) else [Path(_textscan.__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()


def _default(kind: str, cfg: ClassifyConfig) -> Path:
    data = Path(cfg.labeled_data) if cfg.labeled_data else BUNDLED_LABELED
    if not data.is_file():
        raise ClassifierError(f"labeled data for the default {kind} model not found: {data}")
    params = TrainParams(max_chars=cfg.max_chars)
    # the code that prepares text and labels is part of what a cached model depends on
    extra = {"model_text": hashlib.sha256(inspect.getsource(model_text).encode()).hexdigest()}
    if kind == "quality":
        extra.update(rules=cfg.rules, rule_params=cfg.rule_params,
                     rules_code=_rules_code_hash())
    return cached_model(kind, data, params, extra, lambda d: train_kind(kind, data, d, cfg, params=params))


def resolve_models(cfg: ClassifyConfig) -> ModelRefs:
    """Paths and hashes of both models, checked against the configured labels (trained first if needed)."""
    rule_set(cfg)  # an unknown rule name is a config error before any training
    domain = Path(cfg.domain_model) if cfg.domain_model else _default("domain", cfg)
    quality = Path(cfg.quality_model) if cfg.quality_model else _default("quality", cfg)
    load_model(domain, cfg.domains, what="domain model")
    load_model(quality, QUALITY_LABELS, what="quality model")
    return ModelRefs(str(domain), _sha256(domain), str(quality), _sha256(quality))

"""The domain and quality models a run uses: the configured files, or the defaults trained from the
labeled seed set in data/ on first use and cached by the hash of that data and the training settings.

Quality labels are silver labels: a seed document is `hq` when it passes every heuristic rule of its
domain and `lq` when it fails one (procedure and its defence: data/README.md). The model turns the hard
rules into a score in [0, 1] that also ranks the documents the rules let through.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import dataclass, replace
from pathlib import Path

from curate.schemas.annotations import QUALITY_LABEL_HIGH, QUALITY_LABEL_LOW
from curate.schemas.config import ClassifyConfig
from curate.tasks.text import _textscan
from curate.tasks.classify import rules as quality_rules
from curate.tasks.classify.fasttext_model import ClassifierError, LabeledDoc, TrainParams, cache_root, cached_model, \
    family_of, load_model, model_text, read_labeled, train, windows
from curate.tasks.engine.files import write_json_atomic
from curate.tasks.engine.storage import fetch_verified, filesystem, is_remote
from curate.tasks.classify.rules import RuleSet

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_LABELED = REPO_ROOT / "data" / "labeled" / "domain.jsonl.gz"
CALIBRATION = "calibration.json"  # beside a domain model (or, for a labeled set, <name>.calibration.json beside it)
QUALITY_LABELS = (QUALITY_LABEL_HIGH, QUALITY_LABEL_LOW)


@dataclass(frozen=True)
class ModelRefs:
    """What the classify tasks need to load the models, and what identifies them in completion markers."""

    domain_path: str
    domain_sha: str
    quality_path: str
    quality_sha: str
    domain_temperature: float = 1.0  # from the model's calibration (leave-one-source-out); 1.0: uncalibrated
    domain_origin: str = ""  # published in a work root on object storage: the files on the flow's machine
    quality_origin: str = ""


def rule_set(cfg: ClassifyConfig) -> RuleSet:
    return RuleSet(cfg.rules, cfg.rule_params, cfg.lang_rule_params)


def domain_docs(records: list[dict], label_field: str = "domain") -> list[LabeledDoc]:
    return [LabeledDoc(str(r.get("id", i)), r["text"], r[label_field], family_of(r), str(r.get("source") or ""))
            for i, r in enumerate(records)]


def quality_docs(records: list[dict], rules: RuleSet, domain_field: str = "domain") -> list[LabeledDoc]:
    """Silver labels: hq if the record passes every rule of its domain, lq if it fails one."""
    docs = []
    for i, r in enumerate(records):
        failed = rules.first_failure(r["text"], str(r.get(domain_field, "default")), str(r.get("lang", "en")))
        docs.append(LabeledDoc(str(r.get("id", i)), r["text"],
                               QUALITY_LABEL_LOW if failed else QUALITY_LABEL_HIGH, family_of(r)))
    return docs


def train_kind(kind: str, data: Path, out_dir: Path, cfg: ClassifyConfig, label_field: str = "domain",
               quantize: bool = False, params: TrainParams | None = None, sources_eval: bool = True) -> dict:
    """Train the `kind` ('domain' or 'quality') model from a labeled JSONL into out_dir; returns its metrics. A
    domain model whose records name their `source` is also evaluated leave-one-source-out, which calibrates it."""
    params = params or train_params(kind, cfg)
    if kind == "domain":
        docs = domain_docs(read_labeled(data, label_field), label_field)
    elif kind == "quality":
        docs = quality_docs(read_labeled(data, label_field), rule_set(cfg), label_field)
    else:
        raise ClassifierError(f"unknown classifier kind {kind!r}: use domain or quality")
    metrics = train(docs, params, out_dir, source=str(data), quantize=quantize)
    if kind == "domain" and sources_eval and len({d.source for d in docs}) > 1 and all(d.source for d in docs):
        from curate.tasks.classify.evaluation import leave_one_source_out

        metrics["leave_one_source_out"] = loso = leave_one_source_out(docs, params, threshold=cfg.min_domain_confidence,
                                                                      code_shape_min=cfg.code_shape)
        write_json_atomic(Path(out_dir) / "metrics.json", metrics)
        write_json_atomic(Path(out_dir) / CALIBRATION, calibration(loso["temperature"], params, data))
    return metrics


def train_params(kind: str, cfg: ClassifyConfig) -> TrainParams:
    """The domain model reads windows across a document; the quality model's silver labels judge its head. The domain
    model reads words and their 3- to 5-character pieces, not word pairs: a source it never saw shares more pieces of
    words than pairs of them with the sources it learned from (leave-one-source-out macro-F1 0.812 -> 0.839; word
    pairs with the pieces 0.830). 40 epochs rather than 25: the many pieces of words learn slower (0.859 -> 0.864)."""
    if kind == "domain":
        return TrainParams(max_chars=cfg.window_chars, windows=cfg.windows, word_ngrams=1, minn=3, maxn=5, epoch=40)
    return TrainParams(max_chars=cfg.max_chars)


def calibration(temperature: float, params: TrainParams, data: Path) -> dict:
    """What makes a domain model's probability calibrated: the temperature fitted on its leave-one-source-out
    predictions, and what it was fitted for (the training data and settings)."""
    return {"temperature": temperature, "params": params.fingerprint(), "data_sha256": _sha256(Path(data))}


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
    params = train_params(kind, cfg)
    # the code that prepares text and labels is part of what a cached model depends on
    extra = {"model_text": hashlib.sha256((inspect.getsource(model_text) + inspect.getsource(windows)).encode())
             .hexdigest()}
    if kind == "quality":
        extra.update(rules=cfg.rules, rule_params=cfg.rule_params,
                     rules_code=_rules_code_hash())
    shipped = data.with_name(data.name.split(".")[0] + ".calibration.json")
    if kind == "domain" and shipped.is_file():
        extra["calibration"] = hashlib.sha256(shipped.read_bytes()).hexdigest()

    def build(out: Path) -> dict:
        metrics = train_kind(kind, data, out, cfg, params=params, sources_eval=False)
        if kind == "domain":  # the labeled set's own leave-one-source-out calibration, when it is for this model
            cal = _read_calibration(shipped) if shipped.is_file() else None
            fits = cal and cal.get("data_sha256") == _sha256(data) and cal.get("params") == params.fingerprint()
            write_json_atomic(out / CALIBRATION, cal if fits else calibration(1.0, params, data) | {"fitted": False})
        return metrics

    return cached_model(kind, data, params, extra, build)


def _read_calibration(path: Path) -> dict:
    """A calibration file: JSON with a positive number `temperature` (data only: nothing in it is executed)."""
    try:
        cal = json.loads(path.read_text(encoding="utf-8"))
        t = cal["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.01 <= t <= 100:
            raise ValueError(f"temperature {t!r} is not a number in [0.01, 100]")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClassifierError(f"calibration {path} is not usable: {err}") from None
    return cal


def domain_temperature(model_path: Path) -> float:
    """The temperature in calibration.json beside a domain model; 1.0 (its raw probabilities) without one."""
    path = Path(model_path).with_name(CALIBRATION)
    return float(_read_calibration(path)["temperature"]) if path.is_file() else 1.0


def resolve_models(cfg: ClassifyConfig) -> ModelRefs:
    """Paths and hashes of both models, checked against the configured labels (trained first if needed)."""
    rule_set(cfg)  # an unknown rule name is a config error before any training
    domain = Path(cfg.domain_model) if cfg.domain_model else _default("domain", cfg)
    quality = Path(cfg.quality_model) if cfg.quality_model else _default("quality", cfg)
    load_model(domain, cfg.domains, what="domain model")
    load_model(quality, QUALITY_LABELS, what="quality model")
    return ModelRefs(str(domain), _sha256(domain), str(quality), _sha256(quality), domain_temperature(domain))


PUBLISHED = "classify/models"  # models published in a work root on object storage, by sha256


def publish_models(models: ModelRefs, url: str) -> ModelRefs:
    """The models put in a work root on object storage (`classify/models/<sha256>.bin`, once per work root), named
    by their paths within it: the run's workers on other machines fetch them from there (`local_models`); those on
    the flow's machine read the flow's files."""
    fs, root = filesystem(url.rstrip("/"))
    for path, sha in ((models.domain_path, models.domain_sha), (models.quality_path, models.quality_sha)):
        if not fs.exists(f"{root}/{PUBLISHED}/{sha}.bin"):
            fs.put_file(path, f"{root}/{PUBLISHED}/{sha}.bin")
    return replace(models, domain_path=f"{PUBLISHED}/{models.domain_sha}.bin", domain_origin=models.domain_path,
                   quality_path=f"{PUBLISHED}/{models.quality_sha}.bin", quality_origin=models.quality_path)


def local_models(models: ModelRefs, work_root: str) -> ModelRefs:
    """The models as files on this machine: as named, or, published in a work root on object storage, fetched once per
    machine into the model cache and checked against their sha256."""
    return replace(models, domain_path=_local_model(work_root, models.domain_path, models.domain_sha,
                                                    models.domain_origin),
                   quality_path=_local_model(work_root, models.quality_path, models.quality_sha,
                                             models.quality_origin))


@functools.lru_cache(maxsize=8)
def _local_model(work_root: str, path: str, sha: str, origin: str) -> str:
    if Path(path).is_absolute() or not is_remote(work_root):
        return path
    if origin and Path(origin).is_file():  # a worker on the flow's machine
        return origin
    fs, root = filesystem(work_root.rstrip("/"))
    dest = cache_root() / "published" / f"{sha}.bin"
    fetch_verified(fs, f"{root}/{path}", dest, sha)
    return str(dest)

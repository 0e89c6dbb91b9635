"""fastText supervised classifiers (domain, quality): one text preparation, training, honest evaluation.

The held-out split is by source family (every chunk of one source file on the same side), seeded, so near
copies of a training document never score the model. Models are cached by the sha256 of their training
data and parameters: the same seed set and settings give the same model file, trained once.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import fasttext
import numpy as np
import xxhash

from curate.tasks.engine.files import write_json_atomic
from curate.tasks.text.words import windows

LABEL_PREFIX = "__label__"
MIN_EXAMPLES_PER_LABEL = 10


class ClassifierError(ValueError):
    """A model or labeled set that cannot be used; the message says which file and why."""


def model_text(text: str, max_chars: int) -> str:
    """The text a model sees, at training and at inference alike: the first `max_chars` characters,
    lower-cased, on one line (fastText reads one example per line and splits words on ASCII whitespace).

    Measured alternatives: splitting punctuation into tokens cost 10x and scored no better (macro-F1 0.979 vs
    0.982); collapsing whitespace with split/join cost 5x for the same words."""
    return text[:max_chars].lower().replace("\n", " ")


def predict_probs(model, texts: list[str], labels: list[str], max_chars: int, n_windows: int,
                  temperature: float = 1.0) -> np.ndarray:
    """(documents x labels) probabilities: the mean of the model's distributions over each document's windows,
    then temperature-scaled (p^(1/T), renormalised; T from a calibration, 1 leaves them as they are)."""
    owner, prepared = [], []
    for i, text in enumerate(texts):
        for w in windows(text, max_chars, n_windows):
            owner.append(i)
            prepared.append(model_text(w, max_chars))
    col = {f"{LABEL_PREFIX}{lab}": j for j, lab in enumerate(labels)}
    probs = np.zeros((len(texts), len(labels)))
    counts = np.bincount(np.asarray(owner, dtype=np.int64), minlength=len(texts)).astype(float) if owner else \
        np.ones(len(texts))
    if prepared:
        got_labels, got_probs = model.predict(prepared, k=len(labels))
        for i, labs, ps in zip(owner, got_labels, got_probs):
            for lab, p in zip(labs, ps):
                probs[i, col[lab]] += min(1.0, float(p))
    probs /= counts[:, None]
    return temper(probs, temperature)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, 1e-9, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class TrainParams:
    max_chars: int = 2000
    windows: int = 1  # windows a document is read in, at training and at inference (domain model: 3)
    epoch: int = 25
    lr: float = 0.5
    dim: int = 32
    word_ngrams: int = 2
    minn: int = 0  # character n-grams of each word, from minn to maxn characters (0: words only)
    maxn: int = 0
    min_count: int = 2
    bucket: int = 200_000
    holdout: float = 0.2
    seed: int = 7
    quantize_cutoff: int = 100_000  # rows a quantised model keeps: its size, and most of quantisation's time

    def fingerprint(self) -> dict:
        return asdict(self)


@dataclass
class LabeledDoc:
    id: str
    text: str
    label: str
    family: str
    source: str = ""  # the collection it came from: the unit of leave-one-source-out evaluation


def family_of(rec: dict) -> str:
    """A record's source family: its `family` field, else its id without the `#N` chunk suffix."""
    fam = rec.get("family")
    if isinstance(fam, str) and fam:
        return fam
    return str(rec.get("id", "")).split("#", 1)[0]


def read_labeled(path: str | Path, label_field: str = "domain") -> list[dict]:
    """Records of a labeled JSONL (.gz) file; a clear error for a missing file or unusable lines."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"labeled data not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    recs = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise ClassifierError(f"{path}:{lineno}: not valid JSON") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                    raise ClassifierError(f"{path}:{lineno}: a record needs a string 'text' field")
                if not isinstance(rec.get(label_field), str) or not rec[label_field]:
                    raise ClassifierError(f"{path}:{lineno}: missing label field {label_field!r}")
                recs.append(rec)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ClassifierError(f"cannot read labeled data {path}: {err}") from None
    if not recs:
        raise ClassifierError(f"labeled data {path} is empty: no records to train on")
    return recs


def is_held_out(family: str, holdout: float, seed: int) -> bool:
    return xxhash.xxh64_intdigest(f"{seed}:{family}") % 10_000 < holdout * 10_000


def check_label_counts(docs: list[LabeledDoc], source: str) -> Counter:
    counts = Counter(d.label for d in docs)
    thin = {lab: n for lab, n in sorted(counts.items()) if n < MIN_EXAMPLES_PER_LABEL}
    if thin:
        listed = ", ".join(f"{lab} ({n})" for lab, n in thin.items())
        raise ClassifierError(f"{source}: labels with fewer than {MIN_EXAMPLES_PER_LABEL} examples: {listed}")
    if len(counts) < 2:
        raise ClassifierError(f"{source}: a classifier needs at least two labels, found {sorted(counts)}")
    return counts


def evaluate(true: list[str], pred: list[str], labels: list[str]) -> dict:
    """Per-label precision/recall/F1, macro-F1, accuracy and the confusion matrix (rows true, cols predicted)."""
    idx = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, pred):
        cm[idx[t], idx[p]] += 1
    per = {}
    for lab, i in idx.items():
        tp = int(cm[i, i])
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4), "f1": round(float(f1), 4),
                    "support": int(cm[i, :].sum())}
    return {"labels": labels, "per_label": per,
            "macro_f1": round(float(np.mean([v["f1"] for v in per.values()])), 4),
            "accuracy": round(float(np.trace(cm) / cm.sum()), 4) if cm.sum() else 0.0,
            "confusion": {"rows_true_cols_predicted": labels, "matrix": cm.tolist()}}


def _train_file(docs: Iterable[LabeledDoc], params: "TrainParams", path: Path) -> None:
    """One example per window of each document, labelled with the document's label."""
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            for w in windows(d.text, params.max_chars, params.windows):
                f.write(f"{LABEL_PREFIX}{d.label} {model_text(w, params.max_chars)}\n")


def fit(docs: list[LabeledDoc], params: "TrainParams", out_dir: Path, quantize: bool = False) -> float:
    """Train on `docs` into out_dir/model.bin (and model.ftz); returns the learning rate used."""
    with tempfile.TemporaryDirectory(prefix="curate-ft-") as tmp:
        train_path = Path(tmp) / "train.txt"
        _train_file(docs, params, train_path)
        used_lr = _train_in_child(train_path, params, Path(tmp), quantize)
        for name in ("model.bin", "model.ftz") if quantize else ("model.bin",):
            os.replace(Path(tmp) / name, Path(out_dir) / name)
    return used_lr


def train(docs: list[LabeledDoc], params: TrainParams, out_dir: str | Path, source: str = "labeled data",
          quantize: bool = False) -> dict:
    """Train on the families not held out, evaluate on the rest; write model.bin, metrics.json (and model.ftz)."""
    counts = check_label_counts(docs, source)
    train_docs = [d for d in docs if not is_held_out(d.family, params.holdout, params.seed)]
    test_docs = [d for d in docs if is_held_out(d.family, params.holdout, params.seed)]
    if not train_docs or not test_docs:
        raise ClassifierError(f"{source}: too few source families to hold {params.holdout:.0%} out")
    check_label_counts(train_docs, f"{source} (training split)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = sorted(counts)
    used_lr = fit(train_docs, params, out_dir, quantize)
    test_true = [d.label for d in test_docs]
    model = fasttext.load_model(str(out_dir / "model.bin"))
    metrics = evaluate(test_true, predict_labels(model, [d.text for d in test_docs], params, labels), labels)
    metrics.update({"train_docs": len(train_docs), "test_docs": len(test_docs),
                    "train_families": len({d.family for d in train_docs}),
                    "test_families": len({d.family for d in test_docs}),
                    "label_counts": dict(sorted(counts.items())), "params": params.fingerprint(),
                    "lr_used": used_lr, "source": source})
    if quantize:
        qmodel = fasttext.load_model(str(out_dir / "model.ftz"))
        qpred = predict_labels(qmodel, [d.text for d in test_docs], params, labels)
        metrics["quantized_macro_f1"] = evaluate(test_true, qpred, labels)["macro_f1"]
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics


def _fit(train_path: str, params: dict, lr: float, out_dir: str, quantize: bool) -> None:
    """Runs in a fresh process: fastText 0.9.3 can diverge (NaN) on a second training in one process."""
    model = fasttext.train_supervised(
        input=train_path, epoch=params["epoch"], lr=lr, dim=params["dim"], wordNgrams=params["word_ngrams"],
        minCount=params["min_count"], bucket=params["bucket"], minn=params["minn"], maxn=params["maxn"],
        loss="softmax", seed=params["seed"], verbose=0,
        thread=1)  # one thread: fastText's training is deterministic for a seed only single-threaded
    model.save_model(str(Path(out_dir) / "model.bin"))
    if quantize:
        model.quantize(input=train_path, qnorm=True, retrain=False, cutoff=params["quantize_cutoff"])
        model.save_model(str(Path(out_dir) / "model.ftz"))


def _train_in_child(train_path: Path, params: TrainParams, out_dir: Path, quantize: bool) -> float:
    """Train in a spawned process; on divergence halve the learning rate (fastText's own advice), twice."""
    lr = params.lr
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            try:
                pool.submit(_fit, str(train_path), params.fingerprint(), lr, str(out_dir), quantize).result()
                return lr
            except RuntimeError as err:
                if "NaN" not in str(err) or attempt == 2:
                    raise ClassifierError(f"fastText training failed at lr={lr}: {err}") from None
                lr /= 2
    raise AssertionError("unreachable")


def predict_labels(model, texts: list[str], params: TrainParams, labels: list[str]) -> list[str]:
    probs = predict_probs(model, texts, labels, params.max_chars, params.windows)
    return [labels[j] for j in probs.argmax(axis=1)]


def load_model(path: str | Path, expected_labels: Iterable[str] | None = None, what: str = "model"):
    """Load a fastText model; a clear error if it is missing, unreadable or has other labels than expected."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{what} file not found: {path}")
    if not os.access(path, os.R_OK):
        raise ClassifierError(f"{what} file is not readable: {path}")
    try:
        model = fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError) as err:
        raise ClassifierError(f"{what} {path} is not a fastText model ({err})") from None
    labels = sorted(lab[len(LABEL_PREFIX):] for lab in model.get_labels())
    if expected_labels is not None and labels != sorted(expected_labels):
        want = sorted(expected_labels)
        missing = sorted(set(want) - set(labels))
        extra = sorted(set(labels) - set(want))
        raise ClassifierError(f"{what} {path} has labels {labels}, the config expects {want}"
                              + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
    return model


def cache_root() -> Path:
    return Path(os.environ.get("CURATE_MODEL_CACHE") or Path.home() / ".cache" / "curate" / "models")


def cached_model(kind: str, data_path: Path, params: TrainParams, extra: dict,
                 build: Callable[[Path], dict]) -> Path:
    """The model trained from `data_path` with `params` (and `extra`, e.g. the rules behind silver labels),
    from the cache when present; otherwise `build(dir)` trains it there, under a lock, atomically."""
    h = hashlib.sha256()
    h.update(Path(data_path).read_bytes())
    h.update(json.dumps({"params": params.fingerprint(), "extra": extra, "kind": kind}, sort_keys=True).encode())
    final = cache_root() / f"{kind}-{h.hexdigest()[:16]}"
    if (final / "model.bin").is_file():
        return final / "model.bin"
    final.parent.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX: two workers asking at once train once
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "model.bin").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
            build(tmp)
            os.replace(tmp, final)
    return final / "model.bin"

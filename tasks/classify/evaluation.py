"""Leave-one-source-out evaluation and calibration of the domain model.

Held-out families of a training source measure how well a model remembers that source. What a user needs is how
it does on a source it never saw: for each source, train on all the others and predict it. The pooled
out-of-source predictions give the headline macro-F1, per-domain F1 and per-source accuracy, and they are what
the model's temperature is fitted on, so that its probability means the same on unseen sources.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fasttext
import numpy as np

from curate.tasks.classify.decide import domain_order
from curate.tasks.classify.fasttext_model import ClassifierError, LabeledDoc, TrainParams, evaluate, fit, predict_probs, temper

TEMPERATURES = np.round(np.arange(0.5, 8.01, 0.05), 2)
ECE_BINS = 10


def _fold(docs: list[LabeledDoc], source: str, params: TrainParams, labels: list[str]) -> np.ndarray:
    train_docs = [d for d in docs if d.source != source]
    test = [d.text for d in docs if d.source == source]
    with tempfile.TemporaryDirectory(prefix="curate-loso-") as tmp:
        fit(train_docs, params, Path(tmp))
        model = fasttext.load_model(str(Path(tmp) / "model.bin"))
        return predict_probs(model, test, labels, params.max_chars, params.windows)


def expected_calibration_error(probs: np.ndarray, true_idx: np.ndarray) -> float:
    """Mean |accuracy - confidence| over 10 confidence bins, weighted by their share of documents."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        m = bins == b
        if m.any():
            ece += m.mean() * abs((pred[m] == true_idx[m]).mean() - conf[m].mean())
    return round(float(ece), 4)


def _summary(true: list[str], probs: np.ndarray, best: np.ndarray, labels: list[str], threshold: float) -> dict:
    """The decisions' figures (`best`: the label index each document is given), and the probabilities' calibration."""
    true_idx = np.array([labels.index(t) for t in true])
    m = evaluate(true, [labels[j] for j in best], labels)
    sure = probs.max(axis=1) >= threshold
    m.update({"ece": expected_calibration_error(probs, true_idx), "threshold": threshold,
              "share_below_threshold": round(float(1 - sure.mean()), 4),
              "accuracy_above_threshold": round(float((best == true_idx)[sure].mean()), 4) if sure.any() else None})
    return m


def fit_temperature(probs: np.ndarray, true_idx: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the true labels (grid search)."""
    def nll(t: float) -> float:
        p = temper(probs, t)[np.arange(len(true_idx)), true_idx]
        return float(-np.log(np.clip(p, 1e-9, 1.0)).mean())

    return float(min(TEMPERATURES, key=nll))


def leave_one_source_out(docs: list[LabeledDoc], params: TrainParams, workers: int | None = None,
                         threshold: float = 0.6, code_shape_min: float | None = None) -> dict:
    """Train without each source and predict it, deciding each document's domain as the classify stage does
    (decide.domain_order). Returns the pooled figures (macro-F1 over domains, per domain, per source), and the
    temperature fitted on those out-of-source probabilities with its expected calibration error,
    itself judged leave-one-source-out (each source's probabilities scaled by a temperature fitted on the others)."""
    sources = sorted({d.source for d in docs})
    if len(sources) < 2 or any(not d.source for d in docs):
        raise ClassifierError("leave-one-source-out needs a `source` on every record and at least two sources")
    labels = sorted({d.label for d in docs})
    workers = workers or max(1, min(len(sources), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # each fold trains in its own process (fit); threads only wait
        folds = dict(zip(sources, pool.map(lambda s: _fold(docs, s, params, labels), sources)))
    order = sorted(docs, key=lambda d: d.source)  # stable: each source's documents in their order, as folds has them
    raw = np.vstack([folds[s] for s in sources])
    true = [d.label for d in order]
    y = np.array([labels.index(t) for t in true])
    src = np.array([d.source for d in order])
    best = domain_order(raw, [d.text for d in order], labels, code_shape_min)[:, 0]
    metrics = _summary(true, _calibrated(raw, y, src, sources), best, labels, threshold)
    metrics.update({"sources": len(sources), "per_source": _per_source(sources, src, best, y, true, labels),
                    "ece_uncalibrated": expected_calibration_error(raw, y),
                    "temperature": fit_temperature(raw, y), "labels": labels})
    return metrics


def _calibrated(raw: np.ndarray, y: np.ndarray, src: np.ndarray, sources: list[str]) -> np.ndarray:
    """Each source's probabilities scaled by a temperature fitted on the other sources' (judged as it will be used)."""
    calibrated = np.zeros_like(raw)
    for s in sources:
        calibrated[src == s] = temper(raw[src == s], fit_temperature(raw[src != s], y[src != s]))
    return calibrated


def _per_source(sources: list[str], src: np.ndarray, best: np.ndarray, y: np.ndarray, true: list[str],
                labels: list[str]) -> dict:
    """Per source: its label, documents, accuracy and what it was predicted as."""
    out = {}
    for s in sources:
        m = src == s
        pred = [labels[j] for j in best[m]]
        out[s] = {"label": true[int(np.argmax(m))], "docs": int(m.sum()),
                  "accuracy": round(float((best[m] == y[m]).mean()), 4),
                  "predicted": {lab: pred.count(lab) for lab in labels if pred.count(lab)}}
    return out

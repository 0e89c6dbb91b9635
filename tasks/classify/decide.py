"""The domain a document is given: the model's likeliest, unless its lines say otherwise: code where most are shaped
like code and few are written sentences, not code where some are sentences and few are code-shaped.

A source file that opens with a long licence, or a Lisp the model never saw, reads to a bag-of-words model as a
licence or as documentation; its lines read as code whatever the language. Measured leave-one-source-out on the
41 sources of data/labeled: macro-F1 0.760 from the model alone, 0.812 with this (code 0.71 -> 0.87, legal 0.85 ->
0.89); with the model of word pieces (tasks/classify/models.train_params), 0.786 alone and 0.839 with this. The
shape is measured only where the model gives code some weight (a quarter of the seed set's documents, fewer in a
corpus of prose): measuring every document would cost more than the model.
"""
from __future__ import annotations

import numpy as np

from curate.tasks.text.shape import is_code_line, is_sentence_line, sampled_lines, share

CODE = "code"
CODE_WEIGHT_TO_CHECK = 0.05  # the model's probability of code from which a document's shape is measured
# From this share of written sentences among its lines, a document is documentation with code in it, not code: its
# shape does not make it code, and the model calling it code is not enough where its shape is under the threshold.
# Chosen leave-one-source-out within the leave-one-source-out evaluation (40 folds of 41 chose it; that nested figure:
# macro-F1 0.839 -> 0.844; with 0.08 for every source, 0.847).
PROSE_MIN = 0.08
SHAPE_LINES = 40  # lines sampled for the decision: macro-F1 0.812 against 0.813 with 100, at 55% of the time
# What the decision is, for the classify stage's content key: verdicts decided another way are made again
DECISION = (f"model, then code by shape ({SHAPE_LINES} lines) from code weight {CODE_WEIGHT_TO_CHECK} or second, "
            f"not code from a sentence share of {PROSE_MIN}")


def domain_order(probs: np.ndarray, texts: list[str], labels: list[str], code_shape_min: float | None) -> np.ndarray:
    """Per document, the label indices best first: the model's order, with code moved to the front where the model
    puts it second or gives it at least CODE_WEIGHT_TO_CHECK, and the document's code shape reaches `code_shape_min`
    (None: off) with fewer than PROSE_MIN of its lines written sentences; and code moved to second where the model puts
    it first but the document has that share of sentences and its shape is under `code_shape_min`."""
    order = np.argsort(-probs, axis=1, kind="stable")
    if code_shape_min is None or CODE not in labels:
        return order
    c = labels.index(CODE)
    model_says_code = order[:, 0] == c
    for i in np.flatnonzero(~model_says_code & ((order[:, 1] == c) | (probs[:, c] >= CODE_WEIGHT_TO_CHECK))):
        lines = sampled_lines(texts[i], SHAPE_LINES)
        if share(lines, is_code_line) >= code_shape_min and share(lines, is_sentence_line) < PROSE_MIN:
            order[i] = [c, *(j for j in order[i] if j != c)]
    for i in np.flatnonzero(model_says_code):  # (the sentences first: most code has none, and then no shape is needed)
        lines = sampled_lines(texts[i], SHAPE_LINES)
        if share(lines, is_sentence_line) >= PROSE_MIN and share(lines, is_code_line) < code_shape_min:
            order[i] = [order[i][1], c, *order[i][2:]]
    return order

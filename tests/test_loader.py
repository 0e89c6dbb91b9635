"""MixtureDataset: proportions, determinism, worker and rank splits, exact resumption."""
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from curate.schemas.config import MixConfig
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.mix.manifest import build_manifest, collect_shards, write_version
from curate.tasks.engine.storage import StorageError
from curate.tasks.train.manifests import ManifestError
from tests.test_shards_manifest import curate_sample

SEQ = 255
# Workers are spawned: forking a pytest process that already runs a Prefect test server (threads) kills them.
SPAWN = {"multiprocessing_context": "spawn", "persistent_workers": False}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    tok, _, _ = curate_sample(root)
    m = build_manifest(collect_shards(root), tok, MixConfig(method="temperature", total_tokens=1_000_000,
                                                            sequence_length=SEQ, seed=3), "cfg", 1)
    return write_version(root, m)[0]


def indices(loader):
    return [int(i) for batch in loader for i in batch["index"]]


def test_realised_token_shares_match_the_weights(manifest):
    ds = MixtureDataset(manifest)
    tokens = {d: 0 for d in ds.domains}
    for sample in ds:
        tokens[ds.domains[int(sample["domain"])]] += sample["input_ids"].numel() + 1
    total = sum(tokens.values())
    assert total >= 0.99 * 1_000_000
    for d, w in zip(ds.domains, ds.weights):
        assert abs(tokens[d] / total - w) <= 0.005, (d, tokens[d] / total, w)
    multi = MixtureDataset(manifest, sampling="multinomial")
    doms = multi.schedule_at(range(multi.n_samples))[0]
    for i, w in enumerate(multi.weights):
        assert abs((doms == i).mean() - w) < 0.03


def test_samples_are_packed_inputs_and_labels_deterministic_for_a_seed(manifest):
    a, b = MixtureDataset(manifest), MixtureDataset(manifest)
    first = [a.sample(i) for i in range(5)]
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(first, [b.sample(i) for i in range(5)]))
    s = first[0]
    assert s["input_ids"].shape == (SEQ,) and torch.equal(s["input_ids"][1:], s["labels"][:-1])
    other = MixtureDataset(manifest, seed=99)
    assert not all(torch.equal(x["input_ids"], other.sample(i)["input_ids"]) for i, x in enumerate(first))


def test_two_ranks_two_workers_see_every_sample_once(manifest):
    single = indices(DataLoader(MixtureDataset(manifest, batch_size=4), batch_size=4))
    seen = []
    for rank in range(2):
        ds = MixtureDataset(manifest, batch_size=4, rank=rank, world_size=2)
        got = indices(DataLoader(ds, batch_size=4, num_workers=2, **SPAWN))
        assert got == sorted(got)  # each rank's samples come out in order
        seen += got
    assert sorted(seen) == single == list(range(len(single)))


def test_resuming_gives_exactly_the_continuation_also_twice(manifest):
    def run(ds, batches):
        return list(itertools.islice(iter(DataLoader(ds, batch_size=8, num_workers=2, **SPAWN)), batches))

    full = run(MixtureDataset(manifest, batch_size=8), 12)
    ds = MixtureDataset(manifest, batch_size=8)
    part1 = run(ds, 5)
    state = ds.state_dict(samples_consumed=5 * 8)
    resumed = MixtureDataset(manifest, batch_size=8)
    resumed.load_state_dict(state)
    part2 = run(resumed, 3)
    state2 = resumed.state_dict(samples_consumed=3 * 8)
    again = MixtureDataset(manifest, batch_size=8)
    again.load_state_dict(state2)
    part3 = run(again, 4)
    for want, got in zip(full, part1 + part2 + part3):
        assert torch.equal(want["input_ids"], got["input_ids"]) and torch.equal(want["index"], got["index"])


def test_a_state_from_another_manifest_is_refused(manifest):
    ds = MixtureDataset(manifest)
    state = ds.state_dict(10) | {"fingerprint": "f" * 64}
    with pytest.raises(ManifestError, match="allow_other_manifest"):
        ds.load_state_dict(state)
    ds.load_state_dict(state, allow_other_manifest=True)
    assert len(ds) == ds.n_samples - 10


@pytest.mark.parametrize("workers,group", [(0, None), (2, None), (2, 3), (3, 1)])
def test_the_fast_loader_gives_the_plain_dataloaders_batches_in_order(manifest, workers, group):
    plain = list(DataLoader(MixtureDataset(manifest, batch_size=8), batch_size=8))
    fast = list(MixtureDataset(manifest, batch_size=8).loader(num_workers=workers, group=group))
    assert len(fast) == len(plain)
    for want, got in zip(plain, fast):
        for key in ("input_ids", "labels", "domain", "index"):
            assert torch.equal(want[key], got[key]), key
    assert fast[0]["input_ids"].dtype == torch.int64 and fast[0]["labels"].shape == (8, SEQ)


def test_the_fast_loader_resumes_exactly_with_workers(manifest):
    full = [b["index"] for b in itertools.islice(MixtureDataset(manifest, batch_size=8).loader(num_workers=2), 9)]
    ds = MixtureDataset(manifest, batch_size=8)
    first = [b["index"] for b in itertools.islice(ds.loader(num_workers=2, group=2), 5)]
    resumed = MixtureDataset(manifest, batch_size=8)
    resumed.load_state_dict(ds.state_dict(samples_consumed=5 * 8))
    rest = [b["index"] for b in itertools.islice(resumed.loader(num_workers=2, group=3), 4)]
    assert all(torch.equal(a, b) for a, b in zip(full, first + rest))


# --- shuffle windows and a manifest on object storage ------------------------------------------------------------

def _epoch(ds: MixtureDataset, d: int):
    stream = ds.domain_stream(d)
    return stream.read(0, stream.epoch_tokens)


@pytest.mark.parametrize("window", [1, 2])
def test_a_shuffle_window_takes_every_document_once_an_epoch(manifest, window):
    """Shuffling within windows of shards reorders the documents, never drops or repeats one: an epoch holds the same
    tokens as the whole-domain shuffle's, and the next epoch another order of them."""
    whole, windowed = MixtureDataset(manifest), MixtureDataset(manifest, shuffle_shards=window)
    d = max(range(len(whole.domains)), key=lambda k: len(whole.manifest.sources[k].shards))
    assert len(whole.manifest.sources[d].shards) > window
    a, b = _epoch(whole, d), _epoch(windowed, d)
    assert len(a) == len(b) and not np.array_equal(a, b)
    assert np.array_equal(np.sort(a), np.sort(b))
    stream = windowed.domain_stream(d)
    second = stream.read(stream.epoch_tokens, stream.epoch_tokens)
    assert np.array_equal(np.sort(second), np.sort(b)) and not np.array_equal(second, b)
    assert len(stream._open) <= 2 * window  # the shards a reader keeps open


def test_a_resumed_state_must_have_the_same_shuffle_window(manifest):
    state = MixtureDataset(manifest, shuffle_shards=2).state_dict(3)
    with pytest.raises(ValueError, match="shuffle_shards"):
        MixtureDataset(manifest).load_state_dict(state)
    MixtureDataset(manifest, shuffle_shards=2).load_state_dict(state)


def _to_object_store(manifest, url: str) -> None:
    """The work root of `manifest` copied onto an fsspec object store (the manifest, its tokenizer and shards)."""
    import fsspec

    root = manifest.parent.parent.parent
    fs, base = fsspec.core.url_to_fs(url)
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel.startswith(("manifests/", "tokens/", "tokenizer/")):
            fs.pipe_file(f"{base}/{rel}", p.read_bytes())


def _cached(cache) -> int:
    return sum(p.stat().st_size for p in cache.rglob("tokens/**/*") if p.is_file())


def test_a_manifest_on_object_storage_streams_through_a_bounded_cache(manifest, tmp_path, monkeypatch):
    """The loader fetches each shard when it first needs it, into a cache that never holds more than
    CURATE_CACHE_BYTES, and gives the samples the local manifest gives."""
    from curate.schemas.manifest import Manifest

    _to_object_store(manifest, "memory://bounded")
    m = Manifest.model_validate_json(manifest.read_text())
    sizes = sorted((r.bytes for s in m.sources for r in s.shards), reverse=True)
    limit = sizes[0] + sizes[1]
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CURATE_CACHE_BYTES", str(limit))
    with pytest.warns(UserWarning, match="shard cache holds"):
        remote = MixtureDataset("memory://bounded/manifests/default", seq_len=63, shuffle_shards=1)
    local = MixtureDataset(manifest, seq_len=63, shuffle_shards=1)
    high = 0
    for i in range(0, len(local), max(1, len(local) // 300)):
        assert torch.equal(remote.sample(i)["input_ids"], local.sample(i)["input_ids"]), i
        high = max(high, _cached(tmp_path / "cache"))
    assert 0 < high <= limit < sum(sizes)


def test_the_cache_forgets_the_least_recently_used_shard(tmp_path):
    import hashlib

    import fsspec

    from curate.tasks.train.shard_cache import ShardCache

    fs = fsspec.filesystem("memory")
    blobs = {f"tokens/{n}.arrow": (n * 40).encode() for n in "abcd"}
    for rel, data in blobs.items():
        fs.pipe_file(f"/lru/{rel}", data)
    cache = ShardCache("memory://lru", tmp_path / "c", limit=100)

    def get(n):
        rel = f"tokens/{n}.arrow"
        return cache.get(rel, hashlib.sha256(blobs[rel]).hexdigest(), len(blobs[rel])).read_bytes()

    assert get("a") == blobs["tokens/a.arrow"] and get("b")
    time.sleep(0.01)
    get("a")  # used again: b is now the least recently used
    get("c")
    assert sorted(p.name for _, _, p in cache.cached()) == ["a.arrow", "c.arrow"]
    with pytest.raises(StorageError, match="sha256"):
        cache.get("tokens/d.arrow", "0" * 64, 40)
    assert not (tmp_path / "c" / "tokens" / "d.arrow").exists()


def test_the_cache_size_reads_as_a_user_writes_it():
    from curate.tasks.train.shard_cache import DEFAULT_CACHE_BYTES, cache_bytes

    assert cache_bytes("8G") == 8 << 30 and cache_bytes("500M") == 500 << 20 and cache_bytes("1234") == 1234
    assert cache_bytes("1.5GiB") == int(1.5 * (1 << 30)) and cache_bytes("") == DEFAULT_CACHE_BYTES
    with pytest.raises(StorageError, match="is not a size"):
        cache_bytes("lots")


def _hammer(url: str, local: str, limit: int, blobs: dict, rounds: int, seed: int) -> int:
    """One reader process: shards asked in a seeded order, each read back and checked; returns the reads."""
    import hashlib
    import random

    from curate.tasks.train.shard_cache import ShardCache

    cache, rng, reads = ShardCache(url, Path(local), limit=limit), random.Random(seed), 0
    for _ in range(rounds):
        rel = rng.choice(sorted(blobs))
        data, sha = blobs[rel]
        for attempt in (1, 2):  # evicted by the other reader between get and read: fetched again, as open_shard does
            try:
                got = cache.get(rel, sha, len(data)).read_bytes()
                break
            except FileNotFoundError:
                assert attempt == 1
        assert hashlib.sha256(got).hexdigest() == sha
        reads += 1
    return reads


def test_readers_in_several_processes_share_one_bounded_cache(tmp_path):
    """Two processes (DataLoader workers, or ranks on one machine) read through one cache folder with room for two
    of six shards: every read is the shard's bytes, and the folder never ends over its limit."""
    import hashlib
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    src = tmp_path / "store" / "tokens"
    src.mkdir(parents=True)
    blobs = {}
    for k in range(6):
        data = np.random.default_rng(k).integers(0, 255, 50_000 + k, dtype=np.uint8).tobytes()
        (src / f"s{k}.arrow").write_bytes(data)
        blobs[f"tokens/s{k}.arrow"] = (data, hashlib.sha256(data).hexdigest())
    limit = 2 * 50_010
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        jobs = [pool.submit(_hammer, f"file://{tmp_path / 'store'}", str(tmp_path / "cache"), limit, blobs, 60, s)
                for s in range(2)]
        assert [j.result() for j in jobs] == [60, 60]
    assert 0 < _cached(tmp_path / "cache") <= limit

"""MixtureDataset: proportions, determinism, worker and rank splits, exact resumption."""
import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from curate.schemas.config import MixConfig
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.mix.manifest import build_manifest, collect_shards, write_version
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

"""The block schedule equals the whole-run arrays it replaced, sample for sample, from any start; a run of 10^12
tokens builds its dataset at once, in bounded memory."""
import json
import time
import tracemalloc

import numpy as np

from curate.schemas.manifest import Budget, ShardRef, Source, TokenizerRef
from curate.tasks.train.schedule import Schedule, interleave_block, multinomial_block


def whole_run_interleave(counts):
    """The reference: every sample's due time (k + 1) / n_d in one array, sorted (ties: lower domain first)."""
    due = [((np.arange(n) + 1) / n, np.full(n, d, dtype=np.int16)) for d, n in enumerate(counts) if n]
    times, doms = np.concatenate([t for t, _ in due]), np.concatenate([d for _, d in due])
    return doms[np.lexsort((doms, times))]


def whole_run_multinomial(weights, n, seed):
    return np.random.default_rng([seed, 7]).choice(len(weights), size=n, p=np.asarray(weights) / sum(weights))


def within(doms, k):
    out = np.zeros(len(doms), np.int64)
    for d in range(k):
        out[doms == d] = np.arange(int((doms == d).sum()))
    return out


def test_interleave_blocks_equal_the_whole_run_from_any_start():
    rng = np.random.default_rng(0)
    cases = [[5, 5, 5], [2, 4, 8], [3, 6], [1, 1000], [7, 0, 7], [1000, 1000, 999]]
    cases += [[int(x) for x in rng.integers(0, 3000, rng.integers(1, 7))] for _ in range(150)]
    for counts in cases:
        if not sum(counts):
            continue
        ref = whole_run_interleave(counts)
        ref_within = within(ref, len(counts))
        for start in {0, len(ref) - 1, *rng.integers(0, len(ref), 5).tolist()}:
            doms, k = interleave_block(counts, start, min(700, len(ref) - start))
            assert np.array_equal(doms, ref[start: start + len(doms)]), (counts, start)
            assert np.array_equal(k, ref_within[start: start + len(doms)]), (counts, start)


def test_multinomial_blocks_equal_the_whole_run_and_the_schedule_walks_it():
    w = [0.1, 0.5, 0.4]
    ref = whole_run_multinomial(w, 200_000, 3)
    for start in (0, 17, 65_536, 199_990):
        assert np.array_equal(multinomial_block(w, 3, start, min(100, 200_000 - start)), ref[start: start + 100])
    sched = Schedule("multinomial", w, [0, 0, 0], 3)
    sched.n = 200_000
    idx = np.arange(70_000, 200_000, 7)
    doms, k = sched.at(idx)
    assert np.array_equal(doms, ref[idx]) and np.array_equal(k, within(ref, 3)[idx])
    counts = [int(x) for x in (40_000, 100_000, 60_000)]
    ref = whole_run_interleave(counts)
    doms, k = Schedule("interleave", w, counts, 0).at(idx)
    assert np.array_equal(doms, ref[idx]) and np.array_equal(k, within(ref, 3)[idx])


def test_a_manifest_of_a_trillion_tokens_builds_at_once_in_bounded_memory(tmp_path):
    """Shards are sparse files of the sizes the manifest states (their content is never read here)."""
    from curate.tasks.train.loader import MixtureDataset
    from curate.tasks.train.manifests import exports_of, fingerprint

    (tmp_path / "tokens").mkdir()
    sources, per_shard = [], 50_000_000_000
    for d, w in zip(("code", "legal", "literature", "reference", "techdocs"), (0.3, 0.1, 0.2, 0.25, 0.15)):
        shards = []
        for j in range(4):
            p = tmp_path / "tokens" / f"{d}-{j}.arrow"
            with open(p, "wb") as f:
                f.truncate(per_shard * 2)
            shards.append(ShardRef(path=f"tokens/{p.name}", docs=10**7, tokens=per_shard, bytes=per_shard * 2,
                                   sha256="0" * 64))
        sources.append(Source(domain=d, weight=w, available_tokens=4 * per_shard, available_docs=4 * 10**7,
                              target_tokens=int(w * 10**12), epochs=w * 10**12 / (4 * per_shard), max_epochs=4,
                              shards=shards))
    tok = TokenizerRef(path="tok.model", sha256="1" * 64, vocab_size=32000, eos_id=2, token_dtype="uint16")
    budget = Budget(total_tokens=10**12, sequence_length=2048, seed=0)
    body = {"id": "big-v0001", "name": "big", "version": 1, "created_at": "2026-01-01T00:00:00Z",
            "producer": {"package_version": "0", "config_sha256": "x"}, "tokenizer": tok.model_dump(),
            "budget": budget.model_dump(), "sources": [s.model_dump() for s in sources],
            "weights_provenance": {"method": "manual"},
            "fingerprint": fingerprint(tok, budget, sources, exports_of(sources)),
            "exports": exports_of(sources).model_dump(mode="json")}
    (tmp_path / "manifests" / "big").mkdir(parents=True)
    path = tmp_path / "manifests" / "big" / "v0001.json"
    path.write_text(json.dumps(body))
    tracemalloc.start()
    t0 = time.perf_counter()
    ds = MixtureDataset(path, rank=3, world_size=8)
    doms, k = ds.schedule_at([ds.n_samples // 2, ds.n_samples - 1])
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ds.n_samples == 10**12 // 2049 and len(ds) == (ds.n_samples - 3 + 7) // 8
    assert seconds < 1.0 and peak < 100e6, (seconds, peak)
    assert int(k[1]) == round(ds.n_samples * ds.weights[int(doms[1])]) - 1, "the last sample is its domain's last"

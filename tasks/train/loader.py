"""MixtureDataset: the PyTorch side of a manifest. Streams token sequences in the manifest's proportions,
deterministic for a seed, split without overlap across DataLoader workers and distributed ranks, resumable
from a state_dict, over memory-mapped shards each checked (sha256, domain, split, tokenizer) when a reader first
opens it.

How a sample is made (all of it a pure function of the manifest, seed, seq_len and the sample's index):
- The run is N = total_tokens // (seq_len + 1) samples. Each domain gets its count by largest remainder of
  its weight; the schedule (which domain each sample index draws from, tasks/train/schedule.py) places the k-th sample
  of a domain at time (k + 1) / n_d, merged across domains (Megatron-style interleave: every prefix of the run is
  within one sample per domain of its weights), or, with sampling="multinomial", seeded random draws. It is
  computed a block at a time from the counts: building the dataset costs the same for any run length.
- A domain is an endless stream of its documents, in a seeded order reshuffled each epoch; its j-th sample
  is tokens [j (L+1), (j+1)(L+1)) of that stream (documents packed, EOS between them). Inputs are the first
  L tokens, labels the last L.
- Sample indices are dealt to ranks round-robin (i % world_size), and a rank's samples to DataLoader workers
  in whole batches (batch b to worker b % num_workers), so a DataLoader yields each rank's samples in order and
  `samples consumed` is all a checkpoint needs.
"""
from __future__ import annotations

import functools
import itertools
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from curate.tasks.engine.storage import remote_of
from curate.tasks.train.manifests import (ManifestError, dataset_root, load_manifest, open_shard, resolve_manifest,
                                           source_rows)
from curate.tasks.train.shard_cache import cache_bytes
from curate.tasks.train.schedule import CHUNK, Schedule, largest_remainder

STATE_VERSION = 1
GROUP_TOKENS = 1 << 19  # tokens a MixtureLoader worker sends per message (see MixtureLoader)


class _DomainStream:
    """One source's documents as an endless stream of epochs, each in a seeded order. An epoch takes the source's
    shards in windows of `window` shards (None: one window of them all, in manifest order; else the shards in a seeded
    order, cut into windows) and each window's documents in a seeded order (Mosaic Streaming's shuffle blocks). Only
    the windows being read have their shards open (memory-mapped; for a dataset on object storage, fetched through the
    bounded cache), at most two windows' worth whatever the source's size. Where the stream is in an epoch is found
    from the manifest's token counts, which each shard is checked against when it opens."""

    def __init__(self, opener: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]], tokens: list[int],
                 seed: int, index: int, window: int | None = None):
        self.opener, self.tokens = opener, np.asarray(tokens, dtype=np.int64)
        self.window = min(window or len(tokens), len(tokens)) or 1
        self.epoch_tokens = int(self.tokens.sum())
        self.seed, self.index = seed, index
        self._epochs: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}  # e -> (windows' shards, their token ends)
        self._windows: dict[tuple[int, int], tuple] = {}  # (e, w) -> (shards opened, doc starts, order, token ends)
        self._last_key, self._last = None, None  # the window read last
        self._open: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token values, offsets, rows taken) of shard k, opened when first needed; the least recently used of more
        than two windows' shards is closed."""
        if k in self._open:
            self._open.move_to_end(k)
            return self._open[k]
        values, offsets, rows = self.opener(k)
        if (held := int(np.diff(offsets)[rows].sum())) != self.tokens[k]:
            raise ManifestError(f"shard {k} of source {self.index} holds {held} tokens, the manifest {self.tokens[k]}")
        self._open[k] = (values, offsets, rows)
        while len(self._open) > 2 * self.window:
            self._open.popitem(last=False)
        return self._open[k]

    @staticmethod
    def _keep_two(cache: dict, key) -> None:
        if len(cache) >= 2 and key not in cache:  # a reader only ever straddles two epochs (windows)
            cache.pop(min(cache))

    def _epoch(self, e: int) -> tuple[list[np.ndarray], np.ndarray]:
        if e not in self._epochs:
            self._keep_two(self._epochs, e)
            n = len(self.tokens)
            order = np.arange(n) if self.window >= n else \
                np.random.default_rng([self.seed, self.index, e, 0]).permutation(n)
            windows = [order[i: i + self.window] for i in range(0, n, self.window)]
            self._epochs[e] = (windows, np.cumsum([self.tokens[w].sum() for w in windows]))
        return self._epochs[e]

    def _window(self, e: int, w: int) -> tuple:
        """(its shards opened, where each one's documents start, the documents' order, token ends in that order)."""
        if (e, w) != self._last_key:
            if (e, w) not in self._windows:
                self._keep_two(self._windows, (e, w))
                shards = self._epoch(e)[0][w]
                opened = [self._shard(int(k)) for k in shards]
                lengths = np.concatenate([np.diff(o)[r] for _, o, r in opened]).astype(np.int64)
                starts = np.cumsum([0] + [len(r) for _, _, r in opened])
                # One window (the default): the seeded order of every document, as before windows existed.
                rng = np.random.default_rng([self.seed, self.index, e] if len(shards) == len(self.tokens)
                                            else [self.seed, self.index, e, w + 1])
                order = rng.permutation(len(lengths))
                self._windows[(e, w)] = (opened, starts, order, np.cumsum(lengths[order]))
            self._last_key, self._last = (e, w), self._windows[(e, w)]
        return self._last

    def read(self, start: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(n, dtype=np.int64) if out is None else out
        filled = 0
        while filled < n:
            e, pos = divmod(start + filled, self.epoch_tokens)
            w = 0
            if self.window < len(self.tokens):
                ends = self._epoch(e)[1]
                w = int(np.searchsorted(ends, pos, side="right"))
                pos -= int(ends[w - 1]) if w else 0
            opened, starts, order, cum = self._window(e, w)
            k = int(np.searchsorted(cum, pos, side="right"))
            g = int(order[k])
            s = int(np.searchsorted(starts, g, side="right") - 1)
            values, offsets, rows = opened[s]
            row = rows[g - starts[s]]
            doc = values[offsets[row] + pos - (cum[k - 1] if k else 0): offsets[row + 1]]
            take = min(len(doc), n - filled)
            out[filled: filled + take] = doc[:take]
            filled += take
        return out


class _ShardOpener:
    """Opens a source's k-th shard for its stream (checked as every reader checks it): picklable, so that a stream
    is made inside each DataLoader worker."""

    def __init__(self, manifest_path: Path, manifest, domain: str, refs: list):
        self.manifest_path, self.manifest, self.domain, self.refs = manifest_path, manifest, domain, refs

    def __call__(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = open_shard(self.manifest_path, self.manifest, self.domain, self.refs[k], "train")
        tokens = table.column("tokens").combine_chunks()
        return (tokens.values.to_numpy(zero_copy_only=True), tokens.offsets.to_numpy(),
                source_rows(table, self.refs[k]))


def _sampling_weights(m, weights: list[float] | None, manifest) -> list[float]:
    """The manifest's weights, or the caller's (in source order: shares summing to 1, none on an empty domain)."""
    if weights is None:
        return [s.weight for s in m.sources]
    if len(weights) != len(m.sources) or min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"weights must be {len(m.sources)} non-negative shares summing to 1, not {weights}")
    if empty := [s.domain for s, w in zip(m.sources, weights) if w > 0 and not s.available_tokens]:
        raise ManifestError(f"{manifest}: weight given to domains without tokens: {empty}")
    return [float(w) for w in weights]


def _warn_if_cache_too_small(manifest_path: Path, m, window: int | None) -> None:
    """For a dataset on object storage: a warning when the shard cache cannot hold two windows of every domain's
    largest shards (what readers keep open), as shards would then be fetched again and again."""
    if remote_of(dataset_root(manifest_path)) is None:
        return
    need = sum(sum(sorted((r.bytes for r in s.shards), reverse=True)[: 2 * (window or len(s.shards))])
               for s in m.sources if s.weight > 0)
    if need > (limit := cache_bytes()):
        warnings.warn(f"{manifest_path}: the shard cache holds {limit / 2**20:,.0f} MiB (CURATE_CACHE_BYTES), the "
                      f"readers keep up to {need / 2**20:,.0f} MiB of shards open: raise it, or shuffle within fewer "
                      "shards (shuffle_shards)", stacklevel=3)


def _rank(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    """(rank, world size, whether torch.distributed gave them): the caller's, else torch.distributed's, else 0 of 1."""
    if distributed := (torch.distributed.is_available() and torch.distributed.is_initialized()):
        rank = torch.distributed.get_rank() if rank is None else rank
        world_size = torch.distributed.get_world_size() if world_size is None else world_size
    rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return rank, world_size, distributed


class MixtureDataset(IterableDataset):
    def __init__(self, manifest: str | Path, seq_len: int | None = None, seed: int | None = None,
                 sampling: str = "interleave", batch_size: int = 1, rank: int | None = None,
                 world_size: int | None = None, tokenizer_sha256: str | None = None,
                 weights: list[float] | None = None, shuffle_shards: int | None = None):
        """`weights` (in the manifest's source order) replaces the manifest's for sampling: DoReMi's proxy, for
        one, samples its domains uniformly from the same shards. `shuffle_shards`: documents are shuffled within
        windows of this many shards, the shards in a seeded order each epoch (None: across every shard of a domain).
        A reader then holds two windows of shards per domain, which is what a dataset on object storage needs in its
        cache. Every shard is checked when first read."""
        self.manifest_path = resolve_manifest(manifest)
        m = load_manifest(self.manifest_path, tokenizer_sha256=tokenizer_sha256)
        if sampling not in ("interleave", "multinomial"):
            raise ValueError(f"sampling must be interleave or multinomial, not {sampling!r}")
        self.manifest, self.sampling, self.batch_size = m, sampling, batch_size
        self.seq_len = seq_len or m.budget.sequence_length
        self.seed = m.budget.seed if seed is None else seed
        self.domains = [s.domain for s in m.sources]
        self.weights = _sampling_weights(m, weights, manifest)
        self.n_samples = m.budget.total_tokens // (self.seq_len + 1)
        if self.n_samples == 0:
            raise ManifestError(f"{manifest}: a budget of {m.budget.total_tokens} tokens holds no sequence of "
                                f"{self.seq_len + 1}")
        if shuffle_shards is not None and shuffle_shards < 1:
            raise ValueError(f"shuffle_shards must be a number of shards (1 or more), not {shuffle_shards}")
        self.shuffle_shards = shuffle_shards
        _warn_if_cache_too_small(self.manifest_path, m, shuffle_shards)
        self.rank, self.world_size, self.distributed = _rank(rank, world_size)
        self.start = 0  # samples of this rank already consumed (load_state_dict sets it)
        self._streams: dict[int, _DomainStream] | None = None

    @functools.cached_property
    def _schedule(self) -> Schedule:
        counts = largest_remainder(dict(enumerate(self.weights)), self.n_samples)
        return Schedule(self.sampling, self.weights, [counts[i] for i in range(len(self.weights))], self.seed)

    def schedule_at(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(domain, index within the domain) of these increasing sample indices."""
        return self._schedule.at(np.asarray(indices, dtype=np.int64))

    def domain_stream(self, d: int) -> _DomainStream:
        if self._streams is None:
            self._streams = {}
        if d not in self._streams:  # opened lazily, inside each worker: memory maps are not pickled
            src = self.manifest.sources[d]
            self._streams[d] = _DomainStream(_ShardOpener(self.manifest_path, self.manifest, src.domain, src.shards),
                                             [ref.tokens for ref in src.shards], self.seed, d, self.shuffle_shards)
        return self._streams[d]

    def _make(self, i: int, d: int, within: int) -> dict[str, torch.Tensor]:
        block = self.domain_stream(d).read(within * (self.seq_len + 1), self.seq_len + 1)
        t = torch.from_numpy(block)
        return {"input_ids": t[:-1], "labels": t[1:], "domain": torch.tensor(d), "index": torch.tensor(i)}

    def sample(self, i: int) -> dict[str, torch.Tensor]:
        doms, within = self.schedule_at([i])
        return self._make(i, int(doms[0]), int(within[0]))

    def __len__(self) -> int:
        return max(0, (self.n_samples - self.rank + self.world_size - 1) // self.world_size - self.start)

    def _my_indices(self, workers: int, worker: int, group: int = 1):
        """This rank's and worker's sample indices, increasing, a bounded chunk at a time: a rank's j-th remaining
        sample is rank + world_size * (start + j), and the g-th run of `group` batches goes to worker g % workers
        (so a DataLoader taking the workers' outputs in turn yields the rank's samples in order)."""
        b, left = self.batch_size * group, len(self)
        step = max(b * workers, (CHUNK // (b * workers)) * b * workers)
        for j0 in range(0, left, step):
            j = np.arange(j0, min(left, j0 + step), dtype=np.int64)
            j = j[(j // b) % workers == worker]
            if len(j):
                yield self.rank + self.world_size * (self.start + j)

    def _planned(self, group: int = 1):
        """(sample index, domain, index within the domain) of this rank's and DataLoader worker's samples, in order."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        chunks = self._my_indices(workers, worker, group)
        first = next(chunks, None)
        if first is None:
            return
        blocks = self._schedule.blocks(int(first[0]))
        s, doms, within = next(blocks)
        for idx in _chain(first, chunks):
            for i in idx.tolist():
                while i >= s + len(doms):
                    s, doms, within = next(blocks)
                yield i, int(doms[i - s]), int(within[i - s])

    def __iter__(self):
        for i, d, k in self._planned():
            yield self._make(i, d, k)

    def numpy_batches(self, group: int = 1, out: np.ndarray | None = None):
        """This rank's (and worker's) samples in runs of up to `group` whole batches of `batch_size`, as numpy:
        tokens (rows, seq_len + 1), domain and index (rows,), and the rows of each batch; runs go to DataLoader
        workers in turn. Tokens are written into `out` when given (a worker's shared slot). What `loader()` reads."""
        width, per = self.seq_len + 1, self.batch_size * group
        planned = self._planned(group)
        while run := list(itertools.islice(planned, per)):
            tokens = np.empty((len(run), width), dtype=np.int64) if out is None else out[: len(run)]
            for row, (_, d, k) in enumerate(run):
                self.domain_stream(d).read(k * width, width, tokens[row])
            rows = [min(self.batch_size, len(run) - s) for s in range(0, len(run), self.batch_size)]
            yield {"tokens": tokens, "domain": np.array([d for _, d, _ in run], dtype=np.int64),
                   "index": np.array([i for i, _, _ in run], dtype=np.int64), "rows": rows}

    def loader(self, num_workers: int = 0, **kwargs) -> "MixtureLoader":
        """A DataLoader over whole batches of `batch_size` (the fast way to use worker processes: see MixtureLoader)."""
        return MixtureLoader(self, num_workers=num_workers, **kwargs)

    def state_dict(self, samples_consumed: int) -> dict:
        """What a checkpoint needs: this rank has consumed `samples_consumed` samples since iteration began."""
        return {"version": STATE_VERSION, "fingerprint": self.manifest.fingerprint, "seed": self.seed,
                "seq_len": self.seq_len, "sampling": self.sampling, "rank": self.rank, "world_size": self.world_size,
                "weights": self.weights, "shuffle_shards": self.shuffle_shards,
                "samples_seen": self.start + int(samples_consumed)}

    def load_state_dict(self, state: dict, allow_other_manifest: bool = False) -> None:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown loader state version {state.get('version') if isinstance(state, dict) else state!r}")
        if state.get("rank") != self.rank:
            raise ValueError(f"the state was saved by rank {state.get('rank')!r}, this loader is rank {self.rank}: "
                             "each rank resumes from its own state")
        seen = state.get("samples_seen")
        rank_total = (self.n_samples - self.rank + self.world_size - 1) // self.world_size
        if not isinstance(seen, int) or isinstance(seen, bool) or not 0 <= seen <= rank_total:
            raise ValueError(f"samples_seen={seen!r} is not a count between 0 and this rank's {rank_total} samples")
        if state["fingerprint"] != self.manifest.fingerprint and not allow_other_manifest:
            raise ManifestError(f"the state was saved on manifest {state['fingerprint'][:12]}, this is "
                                f"{self.manifest.fingerprint[:12]}: pass allow_other_manifest=True to resume anyway")
        for key in ("seed", "seq_len", "sampling", "world_size", "weights", "shuffle_shards"):
            if state.get(key, getattr(self, key)) != getattr(self, key):
                raise ValueError(f"the state was saved with {key}={state[key]!r}, this loader has {getattr(self, key)!r}")
        self.start = int(state["samples_seen"])


def _chain(first, rest):
    yield first
    yield from rest


def _chain_end(items):
    yield from items
    yield None


def _identity(batch):
    return batch


class _Batches(IterableDataset):
    """A MixtureDataset's whole batches. In a worker, `group` consecutive batches go into one slot of the worker's
    ring of shared memory, and only (slot, rows, domain, index) travel through the DataLoader's queue."""

    def __init__(self, dataset: MixtureDataset, ring: torch.Tensor | None, group: int):
        self.dataset, self.ring, self.group = dataset, ring, group

    def __iter__(self):
        info = get_worker_info()
        if info is None or self.ring is None:
            yield from self.dataset.numpy_batches(self.group)
            return
        slots = [self.ring[info.id, k].view(-1, self.ring.shape[-1]).numpy() for k in range(self.ring.shape[1])]
        for j, b in enumerate(self.dataset.numpy_batches(self.group, out=_SlotCycle(slots))):
            yield {"worker": info.id, "slot": j % len(slots), "rows": b["rows"], "domain": b["domain"],
                   "index": b["index"]}


class _SlotCycle:
    """`out` for numpy_batches that hands out the ring's slots in turn (one per run)."""

    def __init__(self, slots):
        self.slots, self.j = slots, -1

    def __getitem__(self, key):
        self.j += 1
        return self.slots[self.j % len(self.slots)][key]


class MixtureLoader(DataLoader):
    """`DataLoader` over a MixtureDataset's whole batches, yielding input_ids, labels (B, seq_len), domain and index
    (B,) as torch tensors: the same samples in the same order as DataLoader(ds, batch_size=ds.batch_size).

    Why not that plain DataLoader with workers: torch sends every tensor a worker yields through a new shared-memory
    segment whose file descriptor the main process fetches over a fresh authenticated connection (about 0.6-0.8 ms
    per tensor on the benchmark machine, four tensors a batch): two workers delivered 5-9 M tokens/s against 50-120 M
    in process. Pickling the arrays through the worker's pipe instead still costs about 0.35 ms a batch on each
    side, and the DataLoader's own queue round trip about 0.2 ms, more than making a batch costs (0.15 ms).
    So here each worker writes `group` batches' tokens at a time into a ring of shared-memory slots made once,
    before the workers start, and sends only the slot's number; the main process copies the slot out when it hands
    the first of those batches on. A worker reuses a slot only after the main process has copied it: the DataLoader
    gives a worker at most `prefetch_factor` items ahead of what it has handed on, and the ring holds two more."""

    def __init__(self, dataset: MixtureDataset, num_workers: int = 0, prefetch_factor: int = 2,
                 group: int | None = None, **kwargs):
        # About half a million tokens (4 MB) a message: 32 batches of 8 x 2048 (measured best of 8 and 32 there).
        group = group or max(1, GROUP_TOKENS // (dataset.batch_size * (dataset.seq_len + 1)))
        ring = None
        if num_workers:
            kwargs.setdefault("multiprocessing_context", "spawn")  # forking a process with live threads is unsafe
            kwargs["prefetch_factor"] = prefetch_factor
            ring = torch.zeros((num_workers, prefetch_factor + 2, group * dataset.batch_size, dataset.seq_len + 1),
                               dtype=torch.int64).share_memory_()
        self.ring = ring
        super().__init__(_Batches(dataset, ring, group), batch_size=None, collate_fn=_identity,
                         num_workers=num_workers, **kwargs)

    def __iter__(self):
        for b in super().__iter__():
            rows = b["rows"]
            if "tokens" in b:
                tokens = torch.from_numpy(b["tokens"])
            else:  # numpy's copy, not torch's: torch would spread it over intra-op threads that spin beside the workers
                tokens = torch.from_numpy(self.ring[b["worker"], b["slot"]].view(-1, self.ring.shape[-1])[: sum(rows)]
                                          .numpy().copy())
            start = 0
            for n in rows:
                yield self._tensors(tokens[start: start + n], b["domain"][start: start + n], b["index"][start: start + n])
                start += n

    @staticmethod
    def _tensors(tokens: torch.Tensor, domain: np.ndarray, index: np.ndarray) -> dict[str, torch.Tensor]:
        return {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:], "domain": torch.from_numpy(domain),
                "index": torch.from_numpy(index)}

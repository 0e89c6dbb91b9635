"""What the proxy reads: training batches from a manifest (fixed weights, through MixtureDataset, or weights that
change as it learns) and the held-out sequences of every domain's validation shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from curate.schemas.manifest import Manifest
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.train.manifests import source_docs


class ProxyError(ValueError):
    """Proxy training cannot start or go on; the message says what to change."""


def validation_blocks(manifest: Manifest, manifest_path: Path, seq_len: int, max_blocks: int) -> dict[str, torch.Tensor]:
    """Per domain, up to max_blocks sequences of seq_len + 1 tokens: its validation documents in shard order,
    packed (EOS between them). A domain with less than one full sequence gives one shorter sequence."""
    if not any(s.validation_shards for s in manifest.sources):
        raise ProxyError(f"{manifest_path}: the manifest has no validation shards, so there is nothing to measure "
                         "held-out loss on: re-run with tokenize.validation_fraction or validation_min_docs above 0")
    missing = [s.domain for s in manifest.sources if s.weight > 0 and not s.validation_shards]
    if missing:
        raise ProxyError(f"{manifest_path}: domain(s) {', '.join(missing)} have no validation shards: their held-out "
                         "loss cannot be measured; raise tokenize.validation_min_docs and re-run")
    out: dict[str, torch.Tensor] = {}
    need = max_blocks * (seq_len + 1)
    for src in manifest.sources:
        if not src.validation_shards:
            continue
        parts, have = [], 0
        for ref in src.validation_shards:
            values, _ = source_docs(manifest_path, manifest, src.domain, ref, "validation")
            parts.append(values[: need - have].astype(np.int64))
            have += len(parts[-1])
            if have >= need:
                break
        tokens = np.concatenate(parts)
        n = len(tokens) // (seq_len + 1)
        if n:
            blocks = tokens[: n * (seq_len + 1)].reshape(n, seq_len + 1)
        elif len(tokens) >= 2:
            blocks = tokens.reshape(1, -1)
        else:
            raise ProxyError(f"{manifest_path}: the validation shards of {src.domain!r} hold {len(tokens)} token(s)")
        out[src.domain] = torch.from_numpy(blocks)
    return out


class ManifestBatches:
    """Batches in the manifest's proportions (or other fixed weights), through MixtureDataset."""

    def __init__(self, dataset: MixtureDataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size
        self.consumed = 0
        self._it = None

    def next(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = iter(self.dataset)
        rows = []
        for _ in range(self.batch_size):
            try:
                rows.append(next(self._it))
            except StopIteration:
                raise ProxyError(f"the manifest's budget holds {self.dataset.n_samples:,} sequences of "
                                 f"{self.dataset.seq_len + 1} tokens; step {step} needs more: lower --steps or "
                                 "raise mix.total_tokens") from None
        self.consumed += len(rows)
        return (torch.stack([r["input_ids"] for r in rows]), torch.stack([r["labels"] for r in rows]),
                torch.stack([r["domain"] for r in rows]).long())

    def state_dict(self) -> dict:
        return {"kind": "manifest", "loader": self.dataset.state_dict(self.consumed)}

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state["loader"])
        self.consumed, self._it = 0, None


class AdaptiveBatches:
    """Batches whose domain shares change while training (loss-softmax): each step's domains are a seeded draw
    from the current weights, and each domain's stream continues where it stopped."""

    def __init__(self, dataset: MixtureDataset, batch_size: int, weights: np.ndarray, seed: int):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.weights = np.asarray(weights, dtype=np.float64)
        self.cursors = [0] * len(self.weights)

    def next(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        doms = np.random.default_rng([self.seed, 11, step]).choice(len(self.weights), size=self.batch_size,
                                                                   p=self.weights / self.weights.sum())
        width = self.dataset.seq_len + 1
        blocks = []
        for d in doms:
            blocks.append(self.dataset.domain_stream(int(d)).read(self.cursors[d] * width, width))
            self.cursors[d] += 1
        t = torch.from_numpy(np.stack(blocks))
        return t[:, :-1], t[:, 1:], torch.from_numpy(doms.astype(np.int64))

    def state_dict(self) -> dict:
        return {"kind": "adaptive", "cursors": list(self.cursors), "weights": self.weights.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.cursors, self.weights = list(state["cursors"]), np.asarray(state["weights"], dtype=np.float64)

"""Vectorised MinHash signatures in datasketch's "affine32" scheme, and LSH band keys.

datasketch hashes each shingle with a Python call and applies its permutations per document. Here the
same scheme runs on whole batches in numpy: tokens (tasks/text/words.py: words, and in Chinese, Japanese or Thai
each letter) are hashed from their code points in C, token n-gram shingles are combined from token hashes, then datasketch's own MurmurHash3 pre-mix (`_fmix`) and its
permutations (a·h + b mod 2³², taken from a `MinHash(num_perm, seed, scheme="affine32")`) are applied,
and each document's minimum is a `np.minimum.reduceat`. The result equals
`MinHash(..., hashfunc=shingle_hash).update_batch(shingles)` exactly (a test checks), so signatures
wrap as `LeanMinHash` and compare with any datasketch sketch of the same seed and scheme.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param
from datasketch.minhash import _fmix

from curate.tasks.text.words import CHAR_MULT, GRAM_MULT, LEN_MULT, WORD_CHARS, ngram_hashes, token_hashes, tokens

SCHEME = "affine32"
_MASK64 = (1 << 64) - 1
SIG_MAX = np.uint32(0xFFFFFFFF)  # the value of an empty signature slot


def shingle_hashes(token_h: np.ndarray, ngram: int) -> np.ndarray:
    """uint32 hash of every token n-gram (its tokens' hashes, position-weighted, high 32 bits)."""
    return (ngram_hashes(token_h, ngram) >> np.uint64(32)).astype(np.uint32)


def text_shingles(text: str, ngram: int) -> np.ndarray:
    """The distinct shingle hashes of a text."""
    return np.unique(shingle_hashes(token_hashes(text), ngram))


def shingle_hash(shingle: str) -> int:
    """The same hash for one space-joined shingle, in pure Python: datasketch's `hashfunc` for parity."""
    acc = 0
    for j, word in enumerate(shingle.split(" ")):
        cps = [ord(c) for c in word[:WORD_CHARS]]
        h = sum(c * int(m) for c, m in zip(cps, CHAR_MULT)) + len(word) * int(LEN_MULT)
        acc = (acc + (h & _MASK64) * int(GRAM_MULT[j])) & _MASK64
    return acc >> 32


def shingles_of(text: str, ngram: int) -> list[str]:
    toks = tokens(text)
    return [" ".join(toks[i: i + ngram]) for i in range(len(toks) - ngram + 1)]


@dataclass(frozen=True)
class LSHParams:
    bands: int
    rows: int


def lsh_params(threshold: float, num_perm: int, false_negative_weight: float = 0.5) -> LSHParams:
    """datasketch's optimal bands × rows for a Jaccard threshold and a weight of misses over false hits."""
    b, r = _optimal_param(threshold, num_perm, 1.0 - false_negative_weight, false_negative_weight)
    return LSHParams(int(b), int(r))


class MinHasher:
    def __init__(self, num_perm: int = 128, seed: int = 1, ngram: int = 5, chunk_shingles: int = 16384):
        proto = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
        a, b = proto.permutations
        self.a, self.b = a.astype(np.uint32), b.astype(np.uint32)
        self.num_perm, self.seed, self.ngram, self.chunk = num_perm, seed, ngram, chunk_shingles

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n_docs × num_perm uint32 signatures, shingle count per doc). No shingle → all SIG_MAX."""
        per_doc = [shingle_hashes(token_hashes(t), self.ngram) for t in texts]
        counts = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
        sigs_t = np.full((self.num_perm, len(texts)), SIG_MAX, dtype=np.uint32)  # permutation-major
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = np.concatenate(per_doc) if per_doc else np.zeros(0, np.uint32)
        i, n = 0, len(texts)
        while i < n:  # groups of whole documents of about `chunk` shingles: the work stays in cache
            j = int(np.searchsorted(offsets, offsets[i] + self.chunk, side="right")) - 1
            j = max(j, i + 1)
            if counts[i] > self.chunk:  # one huge document: its own running minimum
                sigs_t[:, i] = self._running_min(flat[offsets[i]: offsets[i + 1]])
            else:
                j = min(j, n)
                self._group_min(flat[offsets[i]: offsets[j]], offsets[i:j] - offsets[i], counts[i:j],
                                sigs_t[:, i:j])
            i = j
        return np.ascontiguousarray(sigs_t.T), counts

    def _permuted(self, hashes: np.ndarray) -> np.ndarray:
        hv = _fmix(hashes, 32)
        with np.errstate(over="ignore"):
            out = np.multiply.outer(self.a, hv)
            out += self.b[:, None]
        return out

    def _group_min(self, flat: np.ndarray, starts: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
        has = counts > 0
        if has.any():
            out[:, has] = np.minimum.reduceat(self._permuted(flat), starts[has], axis=1)

    def _running_min(self, hashes: np.ndarray) -> np.ndarray:
        out = np.full(self.num_perm, SIG_MAX, dtype=np.uint32)
        for k in range(0, len(hashes), self.chunk):
            np.minimum(out, self._permuted(hashes[k: k + self.chunk]).min(axis=1), out=out)
        return out

    def lean(self, sig: np.ndarray) -> LeanMinHash:
        return LeanMinHash(seed=self.seed, hashvalues=sig, scheme=SCHEME)


def band_keys(sigs: np.ndarray, params: LSHParams) -> np.ndarray:
    """n_docs × bands uint64 keys: each band's rows mixed into one 64-bit value, band index folded in."""
    n = sigs.shape[0]
    keys = np.zeros((n, params.bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(params.bands):
            cols = sigs[:, band * params.rows: (band + 1) * params.rows].astype(np.uint64)
            acc = np.full(n, np.uint64(band) * LEN_MULT, dtype=np.uint64)
            for j in range(params.rows):
                acc = (acc ^ cols[:, j]) * np.uint64(0x100000001B3) + GRAM_MULT[j % 16]
            keys[:, band] = acc
    return keys

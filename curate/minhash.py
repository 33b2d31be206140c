"""MinHash signatures, computed for many documents at once.

The result is bit-for-bit what datasketch 2.0 computes with its default "affine32" scheme for
the same shingles, hash function, num_perm and seed (tests/curate/test_minhash.py checks it),
so the signatures can go into datasketch's MinHashLSH (in memory or in Redis) unchanged. What
differs is the cost: datasketch's per-shingle `update()` loop runs ~470 docs/s; here each
document costs one Python-level pass over its tokens and everything else is numpy.

Shingles and their hashes:
- word n-grams: each normalised word is hashed once with xxh32 (seed 0); a shingle's hash is
  xxh32 over the little-endian bytes of its n word hashes. That is an xxh32 of a fixed-width
  input, so it is computed for every shingle of a batch at once (`_xxh32_lanes` below) instead
  of one C call per shingle.
- character n-grams: a shingle's hash is xxh32 over its UTF-32-LE bytes (code points are the
  4-byte lanes), again all at once.
A document shorter than n tokens is one shingle of all its tokens; an empty one has no
shingles and gets the empty signature (all 0xFFFFFFFF), which near-dup detection skips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import xxhash

from .normalize import normalize_text, normalize_words

_U32 = np.uint32
P1, P2, P3, P4, P5 = (_U32(2654435761), _U32(2246822519), _U32(3266489917),
                      _U32(668265263), _U32(374761393))
EMPTY_HASH = np.uint32(0xFFFFFFFF)
# Shingles per signing block: the (num_perm, block) uint32 temporary (4 MB at 128
# permutations) stays in cache; 60k-shingle blocks ran 15x slower, bound by memory.
_BLOCK_SHINGLES = 8_192


@dataclass(frozen=True)
class ShingleScheme:
    """How a text becomes a set of hashed shingles and then a signature."""

    unit: str = "word"      # "word" or "char"
    n: int = 5
    num_perm: int = 128
    seed: int = 1

    @property
    def key(self) -> str:
        """Names the scheme in stored signatures: a different scheme means different rows."""
        return f"affine32:{self.unit}:{self.n}:{self.num_perm}:{self.seed}"

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own permutation parameters (taken from it, so they cannot drift)."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U32(r)) | (x >> _U32(32 - r))


def _xxh32_lanes(lanes: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """xxh32 of inputs made of len(lanes) little-endian uint32 words, one input per element.

    The XXH32 algorithm specialised to inputs whose length is a multiple of 4 bytes.
    """
    n = len(lanes)
    size = lanes[0].shape[0]
    with np.errstate(over="ignore"):
        seed32 = _U32(seed)
        if n >= 4:
            v = [np.full(size, seed32 + P1 + P2, _U32), np.full(size, seed32 + P2, _U32),
                 np.full(size, seed32, _U32), np.full(size, seed32 - P1, _U32)]
            stripes = n // 4
            for stripe in range(stripes):
                for i in range(4):
                    v[i] = _rotl(v[i] + lanes[4 * stripe + i] * P2, 13) * P1
            h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
            rest = lanes[4 * stripes:]
        else:
            h = np.full(size, seed32 + P5, _U32)
            rest = lanes
        h = h + _U32(4 * n)
        for lane in rest:
            h = _rotl(h + lane * P3, 17) * P4
        h ^= h >> _U32(15)
        h *= P2
        h ^= h >> _U32(13)
        h *= P3
        h ^= h >> _U32(16)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """datasketch's one-shot MurmurHash3 pre-mix of the affine32 scheme."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> _U32(16))
        h = h * _U32(0x85EBCA6B)
        h = h ^ (h >> _U32(13))
        h = h * _U32(0xC2B2AE35)
        return h ^ (h >> _U32(16))


def tokens(text: str, unit: str) -> np.ndarray:
    """The 4-byte lanes shingles are built from: word hashes or code points."""
    if unit == "char":
        normalised = normalize_text(text)
        return np.frombuffer(normalised.encode("utf-32-le"), dtype="<u4").astype(np.uint32)
    words = normalize_words(text)
    return np.fromiter(map(xxhash.xxh32_intdigest, map(str.encode, words)), np.uint32, len(words))


def shingle_bytes(token_lanes: np.ndarray, n: int) -> list[bytes]:
    """The shingles as the byte strings whose xxh32 is their hash (the reference form)."""
    lanes = token_lanes.astype("<u4")
    if len(lanes) == 0:
        return []
    if len(lanes) < n:
        return [lanes.tobytes()]
    return [lanes[i:i + n].tobytes() for i in range(len(lanes) - n + 1)]


def shingle_hashes_batch(token_arrays: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes of a batch, concatenated, and each document's shingle count."""
    counts = np.array([max(len(t) - n + 1, 1) if len(t) else 0 for t in token_arrays], np.int64)
    if counts.sum() == 0:
        return np.empty(0, np.uint32), counts
    long_docs = [i for i, t in enumerate(token_arrays) if len(t) >= n]
    pieces: dict[int, np.ndarray] = {}
    if long_docs:
        flat = np.concatenate([token_arrays[i] for i in long_docs])
        lengths = np.array([len(token_arrays[i]) for i in long_docs], np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        per_doc = lengths - n + 1
        # Start positions of every shingle: each document's offset plus 0..per_doc-1.
        starts = np.repeat(offsets - np.concatenate(([0], np.cumsum(per_doc)[:-1])), per_doc)
        starts += np.arange(per_doc.sum(), dtype=np.int64)
        hashes = _xxh32_lanes([flat[starts + j] for j in range(n)])
        bounds = np.concatenate(([0], np.cumsum(per_doc)))
        for k, i in enumerate(long_docs):
            pieces[i] = hashes[bounds[k]:bounds[k + 1]]
    for i, t in enumerate(token_arrays):
        if 0 < len(t) < n:
            pieces[i] = np.array([xxhash.xxh32_intdigest(t.astype("<u4").tobytes())], np.uint32)
    ordered = [pieces[i] for i in range(len(token_arrays)) if i in pieces]
    return np.concatenate(ordered), counts


def signatures_from_hashes(hashes: np.ndarray, counts: np.ndarray, num_perm: int,
                           seed: int) -> np.ndarray:
    """(documents, num_perm) uint32 signatures from concatenated shingle hashes."""
    a, b = permutations(num_perm, seed)
    out = np.full((len(counts), num_perm), EMPTY_HASH, np.uint32)
    nonempty = np.flatnonzero(counts)
    if len(nonempty) == 0:
        return out
    mixed = _fmix32(hashes)
    bounds = np.concatenate(([0], np.cumsum(counts[nonempty])))
    # Sign whole documents per block so each block's reduceat sees complete segments.
    doc = 0
    while doc < len(nonempty):
        end = int(np.searchsorted(bounds, bounds[doc] + _BLOCK_SHINGLES, side="right")) - 1
        end = max(end, doc + 1)
        lo, hi = bounds[doc], bounds[end]
        # (num_perm, shingles) layout: each reduceat segment is contiguous, ~20x faster than
        # reducing (shingles, num_perm) along axis 0.
        with np.errstate(over="ignore"):
            permuted = a[:, None] * mixed[None, lo:hi]
            permuted += b[:, None]
        out[nonempty[doc:end]] = np.minimum.reduceat(permuted, bounds[doc:end] - lo, axis=1).T
        doc = end
    return out


_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.split() splits ASCII on


def _xxh32_words(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """xxh32 (seed 0) of the byte strings data[start:start+length], all shorter than 16 bytes,
    at once: XXH32's short-input path with per-word masks for the lanes and tail bytes."""
    padded = np.concatenate((data, np.zeros(16, np.uint8))).astype(np.uint32)
    # The little-endian 4-byte word starting at every byte: one sequential pass, then one
    # gather per lane instead of four.
    lanes_at = padded[:-3] | (padded[1:-2] << _U32(8)) | (padded[2:-1] << _U32(16)) | \
        (padded[3:] << _U32(24))
    with np.errstate(over="ignore"):
        h = P5 + lengths.astype(np.uint32)
        for k in range(3):
            lane = lanes_at[starts + 4 * k]
            h = np.where(lengths >= 4 * (k + 1), _rotl(h + lane * P3, 17) * P4, h)
        tail = starts + 4 * (lengths // 4)
        for j in range(3):
            h = np.where(j < lengths % 4, _rotl(h + padded[tail + j] * P5, 11) * P1, h)
        h ^= h >> _U32(15)
        h *= P2
        h ^= h >> _U32(13)
        h *= P3
        h ^= h >> _U32(16)
    return h


def _ascii_word_tokens(texts: list[str]) -> list[np.ndarray]:
    """Word hashes of ASCII texts without a Python-level loop over words: the batch is one
    byte array, words are runs of non-space bytes, and short words are hashed by
    `_xxh32_words` (a word of 16+ bytes, rare in prose, goes through xxhash itself)."""
    joined = "\n".join(texts).lower().encode("ascii")
    data = np.frombuffer(joined, np.uint8)
    space = _ASCII_SPACE[data]
    edges = np.diff(np.concatenate(([True], space, [True])).astype(np.int8))
    starts = np.flatnonzero(edges == -1)
    ends = np.flatnonzero(edges == 1)
    lengths = ends - starts
    hashes = np.empty(len(starts), np.uint32)
    short = lengths < 16
    hashes[short] = _xxh32_words(data, starts[short], lengths[short])
    for i in np.flatnonzero(~short):
        hashes[i] = xxhash.xxh32_intdigest(joined[starts[i]:ends[i]])
    doc_starts = np.concatenate(([0], np.cumsum([len(t) + 1 for t in texts])[:-1]))
    bounds = np.searchsorted(starts, doc_starts)
    return np.split(hashes, bounds[1:])


def token_arrays(texts: list[str], unit: str) -> list[np.ndarray]:
    """`tokens()` of many texts, equal to it text by text. ASCII texts (most of a corpus) are
    tokenised and hashed together with numpy; the others one by one."""
    if unit == "char" or not texts:
        return [tokens(text, unit) for text in texts]
    ascii_ids = [i for i, text in enumerate(texts) if text.isascii()]
    out: list[np.ndarray | None] = [None] * len(texts)
    if ascii_ids:
        for i, arr in zip(ascii_ids, _ascii_word_tokens([texts[i] for i in ascii_ids])):
            out[i] = arr
    for i, text in enumerate(texts):
        if out[i] is None:
            out[i] = tokens(text, unit)
    return out


def signatures(texts: list[str], scheme: ShingleScheme) -> np.ndarray:
    """MinHash signatures of texts, shape (len(texts), num_perm), dtype uint32."""
    if not texts:
        return np.empty((0, scheme.num_perm), np.uint32)
    token_arrays_ = token_arrays(texts, scheme.unit)
    hashes, counts = shingle_hashes_batch(token_arrays_, scheme.n)
    return signatures_from_hashes(hashes, counts, scheme.num_perm, scheme.seed)


def shingle_set(text: str, scheme: ShingleScheme) -> np.ndarray:
    """The sorted, unique shingle hashes of one text (for exact Jaccard verification)."""
    hashes, _ = shingle_hashes_batch([tokens(text, scheme.unit)], scheme.n)
    return np.unique(hashes)


def shingle_sets(texts: list[str], scheme: ShingleScheme) -> list[np.ndarray]:
    """`shingle_set()` of many texts in one vectorised pass (verification of a batch of
    candidate pairs: one numpy call per text was most of its cost)."""
    if not texts:
        return []
    hashes, counts = shingle_hashes_batch(token_arrays(texts, scheme.unit), scheme.n)
    return [np.unique(part) for part in np.split(hashes, np.cumsum(counts)[:-1])]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def datasketch_minhash(text: str, scheme: ShingleScheme):
    """datasketch's own MinHash of the same shingles (the reference the fast path must equal)."""
    from datasketch import MinHash

    minhash = MinHash(num_perm=scheme.num_perm, seed=scheme.seed, hashfunc=xxhash.xxh32_intdigest)
    minhash.update_batch(shingle_bytes(tokens(text, scheme.unit), scheme.n))
    return minhash


def to_bytes(signature: np.ndarray) -> bytes:
    return signature.astype("<u4").tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u4").astype(np.uint32)


def _sign_chunk(args) -> np.ndarray:
    texts, scheme = args
    return signatures(texts, scheme)


def signatures_parallel(texts: list[str], scheme: ShingleScheme, processes: int = 0,
                        chunk: int = 2000) -> np.ndarray:
    """`signatures()` spread over forked worker processes (0: one per core). Tokenising is
    pure Python, so past ~15k docs/s a single core is the limit."""
    import multiprocessing
    import os

    processes = processes or os.cpu_count() or 1
    if processes <= 1 or len(texts) <= chunk:
        return signatures(texts, scheme)
    pieces = [(texts[i:i + chunk], scheme) for i in range(0, len(texts), chunk)]
    from jobs.process import forked_child

    with multiprocessing.get_context("fork").Pool(processes, initializer=forked_child) as pool:
        return np.concatenate(pool.map(_sign_chunk, pieces, chunksize=1))

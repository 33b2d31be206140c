"""MinHash signatures, computed for many documents at once.

The result is bit-for-bit what datasketch 2.0 computes with its default "affine32" scheme for
the same shingles, hash function, num_perm and seed (tests/curate/test_minhash.py checks it),
so the signatures can go into datasketch's MinHashLSH (in memory or in Redis) unchanged. What
differs is the cost: datasketch's per-shingle `update()` loop runs ~470 docs/s; here a batch
of documents goes through compiled loops (`kernels.py`) that read each byte and each shingle
once: ~60k docs/s on one core for ~200-word documents.

Shingles and their hashes:
- word n-grams: each normalised word is hashed once with xxh32 (seed 0); a shingle's hash is
  xxh32 over the little-endian bytes of its n word hashes. ASCII texts are split and hashed
  in one compiled pass over their bytes; other texts are normalised (NFKC, casefold) in
  Python first.
- character n-grams: a shingle's hash is xxh32 over its UTF-32-LE bytes (code points are the
  4-byte lanes).
A document shorter than n tokens is one shingle of all its tokens; an empty one has no
shingles and gets the empty signature (all 0xFFFFFFFF), which near-dup detection skips.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import xxhash

from .normalize import normalize_text, normalize_words

EMPTY_HASH = np.uint32(0xFFFFFFFF)


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


def _ascii_word_tokens_flat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes of ASCII texts (what `tokens()` gives each), concatenated, and each text's
    word count: the batch is one lower-cased byte string, split and hashed in one compiled
    pass."""
    buf = np.frombuffer("\n".join(texts).lower().encode("ascii"), np.uint8)
    # Text k occupies buf[end_k - len_k:end_k]; the "\n" after it is a separator.
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1) - 1
    from . import kernels  # numba: imported by the processes that sign, not by every one

    return kernels.ascii_word_hashes(buf, ends)


def token_arrays(texts: list[str], unit: str) -> list[np.ndarray]:
    """`tokens()` of many texts, equal to it text by text. ASCII texts (most of a corpus) are
    tokenised and hashed together; the others one by one."""
    if unit == "char" or not texts:
        return [tokens(text, unit) for text in texts]
    flat, counts = _flat_tokens(texts, unit)
    return np.split(flat, np.cumsum(counts)[:-1])


def _flat_tokens(texts: list[str], unit: str) -> tuple[np.ndarray, np.ndarray]:
    """`tokens()` of many texts, concatenated, and each text's token count."""
    if unit == "word" and texts and all(map(str.isascii, texts)):
        return _ascii_word_tokens_flat(texts)
    if unit == "word":
        ascii_ids = [i for i, text in enumerate(texts) if text.isascii()]
        arrays: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        if ascii_ids:
            flat, counts = _ascii_word_tokens_flat([texts[i] for i in ascii_ids])
            for i, arr in zip(ascii_ids, np.split(flat, np.cumsum(counts)[:-1])):
                arrays[i] = arr
        arrays = [arr if arr is not None else tokens(text, unit) for text, arr in zip(texts, arrays)]
    else:
        arrays = [tokens(text, unit) for text in texts]
    counts = np.fromiter(map(len, arrays), np.int64, len(arrays))
    flat = np.concatenate(arrays) if arrays else np.empty(0, np.uint32)
    return flat.astype(np.uint32, copy=False), counts


def shingle_hashes(texts: list[str], scheme: ShingleScheme) -> tuple[np.ndarray, np.ndarray]:
    """Every shingle hash of every text, concatenated, and each text's shingle count."""
    flat, lengths = _flat_tokens(texts, scheme.unit)
    from . import kernels

    return kernels.shingle_hashes(flat, lengths, scheme.n)


def signatures(texts: list[str], scheme: ShingleScheme, threads: int = 0, share: int = 2000) -> np.ndarray:
    """MinHash signatures of texts, shape (len(texts), num_perm), dtype uint32.

    A batch of at least 2 x `share` texts is split over threads (0: one per core): the
    compiled loops release the GIL, and threads cost nothing to start or to send results
    back, where forked signers paid ~40 ms and a pipe (and ran no faster)."""
    out = np.empty((len(texts), scheme.num_perm), np.uint32)
    threads = min(threads or os.cpu_count() or 1, max(len(texts) // max(share, 1), 1))
    bounds = [len(texts) * k // threads for k in range(threads + 1)]
    a, b = permutations(scheme.num_perm, scheme.seed)
    from . import kernels

    def sign(k: int) -> None:
        part = texts[bounds[k]:bounds[k + 1]]
        if part:
            flat, lengths = _flat_tokens(part, scheme.unit)
            out[bounds[k]:bounds[k + 1]] = kernels.signatures(flat, lengths, scheme.n, a, b)

    if threads <= 1:
        sign(0)
    else:
        # A pool per call: a pool kept in a module would not survive the worker's forks.
        with ThreadPoolExecutor(threads, thread_name_prefix="minhash") as pool:
            list(pool.map(sign, range(threads)))
    return out


def shingle_set(text: str, scheme: ShingleScheme) -> np.ndarray:
    """The sorted, unique shingle hashes of one text (for exact Jaccard verification)."""
    return shingle_sets([text], scheme)[0]


def shingle_sets(texts: list[str], scheme: ShingleScheme) -> list[np.ndarray]:
    """`shingle_set()` of many texts in one pass (verification of a batch of candidate pairs:
    one numpy call per text was most of its cost)."""
    if not texts:
        return []
    hashes, counts = shingle_hashes(texts, scheme)
    # One sort for the whole batch: (document, hash) keys, then the unique ones per document.
    doc = np.repeat(np.arange(len(texts), dtype=np.uint64), counts)
    keys = np.sort((doc << np.uint64(32)) | hashes.astype(np.uint64))
    # np.unique here is ~50x slower than the sort (it does not sort near-sorted keys as fast).
    if len(keys):
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    bounds = np.searchsorted(keys, np.arange(1, len(texts), dtype=np.uint64) << np.uint64(32))
    return np.split((keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), bounds)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    from . import kernels

    return float(kernels.sorted_jaccard(a, b))


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

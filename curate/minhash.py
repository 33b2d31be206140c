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
_BATCH_CHARS = 600_000


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


def _shingle_hashes_flat(flat: np.ndarray, lengths: np.ndarray, n: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of documents given as concatenated tokens and token counts: every
    n-token window of `flat` is hashed from n shifted views (no gathers), and the windows
    that stay inside one document are kept; a document shorter than n tokens is one shingle."""
    lengths = np.asarray(lengths, np.int64)
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.uint32), counts
    long_ = lengths >= n
    offsets = np.cumsum(lengths) - lengths
    out = None
    if long_.any():
        windows = len(flat) - n + 1
        every = _xxh32_lanes([flat[j:j + windows] for j in range(n)])
        per_doc = counts[long_]
        # Start positions of the kept windows: each long document's offset plus 0..per_doc-1.
        first = np.cumsum(per_doc) - per_doc
        starts = np.repeat(offsets[long_] - first, per_doc)
        starts += np.arange(len(starts), dtype=np.int64)
        kept = every[starts]
        if long_.all():
            return kept, counts
        out = np.empty(total, np.uint32)
        out[np.repeat(long_, counts)] = kept
    shorts = np.flatnonzero((lengths > 0) & ~long_)
    short_hashes = np.fromiter(
        (xxhash.xxh32_intdigest(flat[offsets[i]:offsets[i] + lengths[i]].astype("<u4").tobytes())
         for i in shorts), np.uint32, len(shorts))
    if out is None:
        return short_hashes, counts
    out[np.repeat(~long_, counts)] = short_hashes
    return out, counts


def shingle_hashes_batch(token_arrays: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes of a batch, concatenated, and each document's shingle count."""
    lengths = np.fromiter(map(len, token_arrays), np.int64, len(token_arrays))
    flat = np.concatenate(token_arrays) if token_arrays else np.empty(0, np.uint32)
    return _shingle_hashes_flat(flat.astype(np.uint32, copy=False), lengths, n)


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
    # One (num_perm, block) buffer for every block: a fresh 4 MB temporary per block costs
    # page faults each time.
    width = max(_BLOCK_SHINGLES, int(counts.max()))
    buffer = np.empty((num_perm, width), np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    # Sign whole documents per block so each block's reduceat sees complete segments.
    doc = 0
    while doc < len(nonempty):
        end = int(np.searchsorted(bounds, bounds[doc] + _BLOCK_SHINGLES, side="right")) - 1
        end = max(end, doc + 1)
        lo, hi = bounds[doc], bounds[end]
        # (num_perm, shingles) layout: each reduceat segment is contiguous, ~20x faster than
        # reducing (shingles, num_perm) along axis 0.
        permuted = buffer[:, :hi - lo]
        np.multiply(a_col, mixed[None, lo:hi], out=permuted)
        permuted += b_col
        out[nonempty[doc:end]] = np.minimum.reduceat(permuted, bounds[doc:end] - lo, axis=1).T
        doc = end
    return out


_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.split() splits ASCII on


def _xxh32_words(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """xxh32 (seed 0) of the byte strings buf[start:start+length], all of 1 to 15 bytes, at
    once: XXH32's short-input path, one straight-line pass per word length (no masks), the
    4-byte lanes read in place from `buf` (which must have 16 spare bytes at its end)."""
    u8 = np.frombuffer(buf, np.uint8)
    # The little-endian 4-byte word at every byte offset, as a view (no copy).
    u32 = np.ndarray((len(buf) - 3,), dtype="<u4", buffer=buf, strides=(1,))
    out = np.empty(len(starts), np.uint32)
    order = np.argsort(lengths.astype(np.uint8), kind="stable")
    group = np.searchsorted(lengths[order], np.arange(1, 17))
    with np.errstate(over="ignore"):
        for length in range(1, 16):
            lo, hi = group[length - 1], group[length]
            if lo == hi:
                continue
            sel = order[lo:hi]
            s = starts[sel]
            h = np.full(hi - lo, P5 + _U32(length), _U32)
            for k in range(length // 4):
                h += u32[s + 4 * k] * P3
                h = _rotl(h, 17)
                h *= P4
            tail = s + 4 * (length // 4)
            for j in range(length % 4):
                h += u8[tail + j].astype(_U32) * P5
                h = _rotl(h, 11)
                h *= P1
            out[sel] = h
        out ^= out >> _U32(15)
        out *= P2
        out ^= out >> _U32(13)
        out *= P3
        out ^= out >> _U32(16)
    return out


def _ascii_word_tokens_flat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes of ASCII texts without a Python-level loop over words, concatenated, and
    each text's word count: the batch is one byte array, words are runs of non-space bytes,
    and short words are hashed by `_xxh32_words` (a word of 16+ bytes, rare in prose, goes
    through xxhash itself)."""
    # A separator before and after, so every word has a space on both sides.
    buf = b"\n" + "\n".join(texts).lower().encode("ascii") + b"\n" + bytes(16)
    data = np.frombuffer(buf, np.uint8, len(buf) - 16)
    # Every byte up to 32 is a space except some control bytes, so look those up alone.
    space = data <= 32
    control = np.flatnonzero(data < 32)
    space[control] = _ASCII_SPACE[data[control]]
    # Space/word changes alternate: word starts at even entries, ends at odd ones.
    change = np.flatnonzero(space[1:] != space[:-1]) + 1
    starts, ends = change[0::2], change[1::2]
    lengths = ends - starts
    short = lengths < 16
    if short.all():
        hashes = _xxh32_words(buf, starts, lengths)
    else:
        hashes = np.empty(len(starts), np.uint32)
        hashes[short] = _xxh32_words(buf, starts[short], lengths[short])
        for i in np.flatnonzero(~short):
            hashes[i] = xxhash.xxh32_intdigest(buf[starts[i]:ends[i]])
    # Text k occupies buf[doc_starts[k]:doc_starts[k] + len(text)].
    doc_starts = np.cumsum([1] + [len(t) + 1 for t in texts])
    counts = np.diff(np.searchsorted(starts, doc_starts))
    return hashes, counts


def _ascii_word_tokens(texts: list[str]) -> list[np.ndarray]:
    hashes, counts = _ascii_word_tokens_flat(texts)
    return np.split(hashes, np.cumsum(counts)[:-1])


def _flat_tokens(texts: list[str], unit: str) -> tuple[np.ndarray, np.ndarray]:
    """`tokens()` of many texts, concatenated, and each text's token count."""
    if unit == "word" and texts and all(map(str.isascii, texts)):
        return _ascii_word_tokens_flat(texts)
    arrays = token_arrays(texts, unit)
    counts = np.fromiter(map(len, arrays), np.int64, len(arrays))
    flat = np.concatenate(arrays) if arrays else np.empty(0, np.uint32)
    return flat.astype(np.uint32, copy=False), counts


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


def cache_batches(texts: list[str], target_chars: int = _BATCH_CHARS):
    """Consecutive slices of `texts` of about `target_chars` characters each (at least one
    text): the vectorised passes make several full-size temporaries (bytes, masks, word
    starts, hashes), and batches that stay in the core's cache ran 35% faster than one batch
    of 10,000 texts, more with two processes sharing the L3."""
    start, size = 0, 0
    for end, text in enumerate(texts, start=1):
        size += len(text)
        if size >= target_chars:
            yield texts[start:end]
            start, size = end, 0
    if start < len(texts):
        yield texts[start:]


def signatures(texts: list[str], scheme: ShingleScheme) -> np.ndarray:
    """MinHash signatures of texts, shape (len(texts), num_perm), dtype uint32."""
    out = np.empty((len(texts), scheme.num_perm), np.uint32)
    done = 0
    for batch in cache_batches(texts):
        flat, lengths = _flat_tokens(batch, scheme.unit)
        hashes, counts = _shingle_hashes_flat(flat, lengths, scheme.n)
        out[done:done + len(batch)] = signatures_from_hashes(hashes, counts, scheme.num_perm, scheme.seed)
        done += len(batch)
    return out


def shingle_set(text: str, scheme: ShingleScheme) -> np.ndarray:
    """The sorted, unique shingle hashes of one text (for exact Jaccard verification)."""
    hashes, _ = shingle_hashes_batch([tokens(text, scheme.unit)], scheme.n)
    return np.unique(hashes)


def shingle_sets(texts: list[str], scheme: ShingleScheme) -> list[np.ndarray]:
    """`shingle_set()` of many texts in vectorised passes (verification of a batch of
    candidate pairs: one numpy call per text was most of its cost), a cache-sized batch each."""
    return [s for batch in cache_batches(texts) for s in _shingle_sets_batch(batch, scheme)]


def _shingle_sets_batch(texts: list[str], scheme: ShingleScheme) -> list[np.ndarray]:
    if not texts:
        return []
    hashes, counts = _shingle_hashes_flat(*_flat_tokens(texts, scheme.unit), scheme.n)
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


def _sign_in_child(conn, texts: list[str], scheme: ShingleScheme) -> None:
    """A forked child's share: it inherited `texts` (nothing pickled) and sends back the raw
    signature bytes."""
    from jobs.process import forked_child

    forked_child()
    try:
        conn.send_bytes(signatures(texts, scheme).tobytes())
    except BaseException:
        conn.send_bytes(b"")
        raise
    finally:
        conn.close()


def signatures_parallel(texts: list[str], scheme: ShingleScheme, processes: int = 0,
                        chunk: int = 2000) -> np.ndarray:
    """`signatures()` spread over processes (0: one per core): the texts are split into one
    contiguous share per process, this process signs the first share itself and forked
    children (which inherit the texts, so nothing is pickled) sign the others and send back
    raw signature bytes. Shares are at least `chunk` texts. Tokenising is pure Python, so
    past ~15k docs/s a single core is the limit."""
    import multiprocessing
    import os

    processes = min(processes or os.cpu_count() or 1, max(len(texts) // max(chunk, 1), 1))
    if processes <= 1:
        return signatures(texts, scheme)
    bounds = [len(texts) * k // processes for k in range(processes + 1)]
    context = multiprocessing.get_context("fork")
    children = []
    try:
        for k in range(1, processes):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_sign_in_child, daemon=True,
                                    args=(send, texts[bounds[k]:bounds[k + 1]], scheme))
            child.start()
            send.close()
            children.append((child, receive, bounds[k + 1] - bounds[k]))
        pieces = [signatures(texts[:bounds[1]], scheme)]
        for child, receive, size in children:
            blob = receive.recv_bytes()
            if len(blob) != size * scheme.num_perm * 4:
                raise RuntimeError(f"signing child {child.pid} failed")
            pieces.append(np.frombuffer(blob, np.uint32).reshape(size, scheme.num_perm))
        return np.concatenate(pieces)
    finally:
        for child, receive, _ in children:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
                child.join()

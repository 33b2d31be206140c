"""The hot loops of near-duplicate detection, compiled with numba.

Each function computes exactly what the numpy reference code in `minhash.py` and `neardup.py`
computes (tests/curate/test_kernels.py checks them against each other and against datasketch);
what differs is memory traffic. The numpy forms make several full-size temporaries per step
(a byte mask, word starts, 128 permuted copies of every shingle hash) and, on this kind of
2-vCPU machine, two processes doing wide SIMD passes share one core's vector units: the
numpy signer scaled 1.3x on 2 processes. These loops touch each byte and each shingle once,
keep one signature row in L1 and scale with the cores.

Integers: numba widens uint32 arithmetic to 64 bits, so every step is masked back to 32.
The functions are compiled on first use and cached next to this file (`cache=True`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

M32 = np.uint64(0xFFFFFFFF)
P1 = np.uint64(2654435761)
P2 = np.uint64(2246822519)
P3 = np.uint64(3266489917)
P4 = np.uint64(668265263)
P5 = np.uint64(374761393)
EMPTY = np.uint32(0xFFFFFFFF)

_jit = nb.njit(cache=True, nogil=True, boundscheck=False)


@nb.njit(cache=True, inline="always")
def _rotl(x, r):
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & M32


@nb.njit(cache=True, inline="always")
def _round(v, lane):
    return (_rotl((v + lane * P2) & M32, 13) * P1) & M32


@nb.njit(cache=True, inline="always")
def _avalanche(h):
    h ^= h >> np.uint64(15)
    h = (h * P2) & M32
    h ^= h >> np.uint64(13)
    h = (h * P3) & M32
    h ^= h >> np.uint64(16)
    return h


@nb.njit(cache=True, inline="always")
def _read32(buf, p):
    return (np.uint64(buf[p]) | (np.uint64(buf[p + 1]) << np.uint64(8))
            | (np.uint64(buf[p + 2]) << np.uint64(16)) | (np.uint64(buf[p + 3]) << np.uint64(24)))


@nb.njit(cache=True, inline="always")
def _xxh32_bytes(buf, start, length):
    """XXH32 (seed 0) of buf[start:start + length]."""
    p = start
    end = start + length
    if length >= 16:
        v1 = (P1 + P2) & M32
        v2 = P2
        v3 = np.uint64(0)
        v4 = (np.uint64(1 << 32) - P1) & M32
        while p + 16 <= end:
            v1 = _round(v1, _read32(buf, p))
            v2 = _round(v2, _read32(buf, p + 4))
            v3 = _round(v3, _read32(buf, p + 8))
            v4 = _round(v4, _read32(buf, p + 12))
            p += 16
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & M32
    else:
        h = P5
    h = (h + np.uint64(length)) & M32
    while p + 4 <= end:
        h = (_rotl((h + _read32(buf, p) * P3) & M32, 17) * P4) & M32
        p += 4
    while p < end:
        h = (_rotl((h + np.uint64(buf[p]) * P5) & M32, 11) * P1) & M32
        p += 1
    return _avalanche(h)


@nb.njit(cache=True, inline="always")
def _is_space(c):
    # What str.split() splits ASCII on: \t \n \v \f \r, \x1c-\x1f and the space.
    return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)


@_jit
def ascii_word_hashes(buf, doc_ends):
    """xxh32 of every whitespace-separated word of each document of `buf` (lower-cased ASCII
    bytes; document k ends at doc_ends[k]), concatenated, and each document's word count."""
    hashes = np.empty(len(buf) // 2 + 1, np.uint32)
    counts = np.zeros(len(doc_ends), np.int64)
    n = 0
    p = 0
    for doc in range(len(doc_ends)):
        end = doc_ends[doc]
        while p < end:
            while p < end and _is_space(buf[p]):
                p += 1
            if p >= end:
                break
            start = p
            while p < end and not _is_space(buf[p]):
                p += 1
            hashes[n] = np.uint32(_xxh32_bytes(buf, start, p - start))
            n += 1
            counts[doc] += 1
    return hashes[:n].copy(), counts


@nb.njit(cache=True, inline="always")
def _shingle(raw, offset, length, i, n):
    """The hash of shingle i of a document whose `length` lanes start at lane `offset` of
    `raw` (the lanes' little-endian bytes): the xxh32 of n lanes, or of all of them when the
    document is shorter than n."""
    if length < n:
        return _xxh32_bytes(raw, 4 * offset, 4 * length)
    return _xxh32_bytes(raw, 4 * (offset + i), 4 * n)


@nb.njit(cache=True, inline="always")
def _shingle_count(length, n):
    if length >= n:
        return length - n + 1
    return 1 if length > 0 else 0


@_jit
def shingle_hashes(lanes, lengths, n):
    """Every shingle hash of every document (lanes concatenated; `lengths` tokens each),
    concatenated, and each document's shingle count: `minhash._shingle_hashes_flat`."""
    counts = np.empty(len(lengths), np.int64)
    total = 0
    for d in range(len(lengths)):
        counts[d] = _shingle_count(lengths[d], n)
        total += counts[d]
    out = np.empty(total, np.uint32)
    raw = lanes.view(np.uint8)
    k = 0
    offset = 0
    for d in range(len(lengths)):
        for i in range(counts[d]):
            out[k] = np.uint32(_shingle(raw, offset, lengths[d], i, n))
            k += 1
        offset += lengths[d]
    return out, counts


@nb.njit(cache=True, inline="always")
def _fmix32(h):
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & M32
    h ^= h >> np.uint64(16)
    return h


@_jit
def signatures(lanes, lengths, n, a, b):
    """(documents, num_perm) MinHash signatures straight from the token lanes: for every
    shingle, min over it of (a * fmix32(hash) + b) mod 2^32 per permutation, as datasketch's
    affine32 scheme. A document without tokens keeps the empty signature."""
    num_perm = len(a)
    out = np.full((len(lengths), num_perm), EMPTY, np.uint32)
    raw = lanes.view(np.uint8)
    offset = 0
    for d in range(len(lengths)):
        row = out[d]
        for i in range(_shingle_count(lengths[d], n)):
            h = np.uint32(_fmix32(_shingle(raw, offset, lengths[d], i, n)))
            for p in range(num_perm):
                v = np.uint32((np.uint64(a[p]) * np.uint64(h) + np.uint64(b[p])) & M32)
                row[p] = min(row[p], v)
        offset += lengths[d]
    return out


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53], np.uint64)


@_jit
def band_mixes(sigs, bands, rows):
    """A 64-bit mix of each document's rows in each band, (documents, bands): equal rows give
    equal mixes, so sorting a band's mixes puts its buckets together."""
    out = np.empty((sigs.shape[0], bands), np.uint64)
    for d in range(sigs.shape[0]):
        for band in range(bands):
            mix = np.uint64(0)
            for j in range(rows):
                mix = (mix ^ np.uint64(sigs[d, band * rows + j])) * _MIX[j % 6]
                mix ^= mix >> np.uint64(29)
            out[d, band] = mix
    return out


@_jit
def sorted_jaccard(a, b):
    """Exact Jaccard similarity of two sorted arrays of unique values."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    i = j = common = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            common += 1
            i += 1
            j += 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return common / (len(a) + len(b) - common)

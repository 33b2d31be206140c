"""Near-duplicate candidates (LSH banding), verification, and clusters.

datasketch's automatic (bands, rows) for threshold 0.8 and 128 permutations is 9 x 13, which
makes a pair at J = 0.8 a candidate only ~40% of the time per band set (measured recall 0.75).
`choose_bands` instead picks the banding that reaches a recall target at the threshold and,
among those, admits the fewest low-similarity pairs; candidates are then verified (exact
Jaccard over the shingle sets, or the MinHash estimate) so precision does not suffer.

Three interchangeable indexes give the same candidate pairs for the same signatures:
- "memory": numpy grouping of equal bands, for a whole batch at once (the fast default);
- "datasketch": datasketch's MinHashLSH with the same (bands, rows), in a dict;
- "redis": datasketch's MinHashLSH with Redis storage, shared by workers and kept between
  runs, so a later run only inserts the signatures it has not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .minhash import EMPTY_HASH, ShingleScheme, permutations

# A bucket bigger than this is linked as a chain (plus its first member) rather than as all
# pairs: a cluster of 1,000 exact copies would otherwise make half a million candidates.
_ALL_PAIRS_BUCKET = 32


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that a pair with this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def choose_bands(num_perm: int, threshold: float, min_recall: float = 0.995) -> tuple[int, int]:
    """(bands, rows) reaching `min_recall` at `threshold`, admitting the fewest pairs below it.

    The cost of a banding is the probability mass it gives to pairs well below the threshold
    (they all need verifying); among bandings meeting the recall target the cheapest wins.
    When none meets it, the one with the best recall at the threshold does.
    """
    best, best_cost = None, None
    fallback, fallback_recall = None, -1.0
    grid = np.linspace(0.0, max(threshold - 0.1, 0.0), 50)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands < 2:
            break
        recall = candidate_probability(threshold, bands, rows)
        if recall > fallback_recall:
            fallback, fallback_recall = (bands, rows), recall
        if recall < min_recall:
            continue
        cost = float(np.mean([candidate_probability(s, bands, rows) for s in grid]))
        if best_cost is None or cost < best_cost:
            best, best_cost = (bands, rows), cost
    return best or fallback


@dataclass(frozen=True)
class LSHParams:
    scheme: ShingleScheme
    threshold: float = 0.8
    bands: int = 0
    rows: int = 0

    @classmethod
    def for_recall(cls, scheme: ShingleScheme, threshold: float, bands: int | None = None,
                   rows: int | None = None) -> "LSHParams":
        if not bands or not rows:
            bands, rows = choose_bands(scheme.num_perm, threshold)
        return cls(scheme, threshold, bands, rows)


def _link_bucket(members: np.ndarray, pairs: list[tuple[int, int]]) -> None:
    if len(members) <= _ALL_PAIRS_BUCKET:
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                pairs.append((int(members[i]), int(members[j])))
    else:
        first = int(members[0])
        for k in range(1, len(members)):
            pairs.append((first, int(members[k])))
            if k > 1:
                pairs.append((int(members[k - 1]), int(members[k])))


def _band_buckets(block: np.ndarray, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, same): an order of a band's rows that puts equal rows next to each other, and
    whether each row in that order equals the one before it. Sorted by the rows' 64-bit mixes
    (`kernels.band_mixes`: a fast integer sort, and the rows compared only where mixes meet);
    should two different rows share a mix, by the rows themselves."""
    order = np.argsort(mix, kind="stable")
    sorted_mix = mix[order]
    same = sorted_mix[1:] == sorted_mix[:-1]
    at = np.flatnonzero(same)
    if len(at) and np.any(block[order[at]] != block[order[at + 1]]):
        view = np.ascontiguousarray(block).view(
            np.dtype((np.void, block.dtype.itemsize * block.shape[1]))).ravel()
        order = np.argsort(view, kind="stable")
        ordered = block[order]
        same = np.all(ordered[1:] == ordered[:-1], axis=1)
    return order, same


def candidate_pairs_memory(keys: np.ndarray, sigs: np.ndarray, params: LSHParams) -> set[tuple[int, int]]:
    """Keys of every pair sharing a band, found by sorting each band's rows (no Python loop
    over documents). Empty signatures never pair."""
    usable = ~np.all(sigs == EMPTY_HASH, axis=1)
    keys, sigs = keys[usable], sigs[usable]
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    pairs: list[tuple[int, int]] = []
    from . import kernels  # numba: imported by the processes that sign, not by every one

    mixes = kernels.band_mixes(np.ascontiguousarray(sigs), params.bands, params.rows)
    for band in range(params.bands):
        block = sigs[:, band * params.rows:(band + 1) * params.rows]
        order, same = _band_buckets(block, mixes[:, band])
        if not same.any():
            continue
        # Runs of equal band values: each run is one bucket with 2+ members.
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        sizes = np.diff(np.concatenate((starts, [len(order)])))
        run = np.repeat(np.arange(len(starts)), sizes)
        small = np.repeat(sizes <= _ALL_PAIRS_BUCKET, sizes)
        members = keys[order]
        # All pairs of a small bucket: members d apart in the run, for every d.
        for d in range(1, int(sizes[sizes <= _ALL_PAIRS_BUCKET].max(initial=1))):
            hit = np.flatnonzero((run[d:] == run[:-d]) & small[d:])
            if len(hit) == 0:
                break
            firsts.append(members[hit])
            seconds.append(members[hit + d])
        for start, size in zip(starts[sizes > _ALL_PAIRS_BUCKET], sizes[sizes > _ALL_PAIRS_BUCKET]):
            _link_bucket(np.sort(keys[order[start:start + size]]), pairs)
    if pairs:
        firsts.append(np.array([a for a, _ in pairs], np.int64))
        seconds.append(np.array([b for _, b in pairs], np.int64))
    if not firsts:
        return set()
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    low, high = np.minimum(a, b), np.maximum(a, b)
    keep = low != high
    return set(zip(low[keep].tolist(), high[keep].tolist()))


def _datasketch_minhash(sig: np.ndarray, scheme: ShingleScheme):
    from datasketch import MinHash

    return MinHash(seed=scheme.seed, hashvalues=sig, permutations=np.array(
        permutations(scheme.num_perm, scheme.seed)), scheme="affine32")


class DatasketchIndex:
    """datasketch's MinHashLSH (dict or Redis storage) with our (bands, rows)."""

    def __init__(self, params: LSHParams, storage_config: dict | None = None):
        from datasketch import MinHashLSH

        self.params = params
        self.lsh = MinHashLSH(threshold=params.threshold, num_perm=params.scheme.num_perm,
                              params=(params.bands, params.rows), storage_config=storage_config)

    def existing_keys(self) -> set:
        return set(self.lsh.keys.keys()) if self.lsh.prepickle is False else {
            __import__("pickle").loads(k) for k in self.lsh.keys.keys()}

    def insert_many(self, keys: Iterable[int], sigs: np.ndarray) -> None:
        with self.lsh.insertion_session() as session:
            for key, sig in zip(keys, sigs):
                session.insert(int(key), _datasketch_minhash(sig, self.params.scheme),
                               check_duplication=False)

    def candidate_pairs(self, keys: np.ndarray, sigs: np.ndarray, allowed: set[int] | None = None
                        ) -> set[tuple[int, int]]:
        pairs = set()
        for key, sig in zip(keys, sigs):
            if np.all(sig == EMPTY_HASH):
                continue
            for other in self.lsh.query(_datasketch_minhash(sig, self.params.scheme)):
                if other != key and (allowed is None or other in allowed):
                    pairs.add((min(key, other), max(key, other)))
        return {(int(a), int(b)) for a, b in pairs}


def redis_storage_config(basename: str, url: str) -> dict:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return {
        "type": "redis",
        "basename": basename.encode(),
        "redis": {"host": parsed.hostname or "127.0.0.1", "port": parsed.port or 6379,
                  "db": int((parsed.path or "/0").lstrip("/") or 0)},
    }


def candidate_pairs(keys: np.ndarray, sigs: np.ndarray, params: LSHParams, backend: str = "memory",
                    *, redis_url: str = "", redis_basename: str = "") -> set[tuple[int, int]]:
    """Candidate pairs among `keys` (record ids) with any of the three indexes."""
    keys = np.asarray(keys, dtype=np.int64)
    if backend == "memory":
        return candidate_pairs_memory(keys, sigs, params)
    if backend == "datasketch":
        index = DatasketchIndex(params)
        index.insert_many(keys, sigs)
        return index.candidate_pairs(keys, sigs)
    if backend == "redis":
        index = DatasketchIndex(params, redis_storage_config(redis_basename, redis_url))
        # Signatures never change for a record and scheme, so what is there stays valid.
        present = index.existing_keys()
        new = np.array([k not in present for k in keys.tolist()], dtype=bool)
        index.insert_many(keys[new], sigs[new])
        return index.candidate_pairs(keys, sigs, allowed=set(keys.tolist()))
    raise ValueError(f"unknown index backend {backend!r}")


def minhash_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


class UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in list(self.parent):
            out.setdefault(self.find(x), []).append(x)
        return [sorted(members) for members in out.values() if len(members) > 1]


@dataclass
class Cluster:
    members: list[int]
    representative: int
    # Similarity of each non-representative member to the representative.
    similarity: dict[int, float]


def verified_clusters(
    pairs: Iterable[tuple[int, int]],
    similarity: Callable[[int, int], float],
    threshold: float,
    choose_representative: Callable[[list[int]], int],
) -> list[Cluster]:
    """Keep candidate pairs at or above the threshold, join them into clusters, pick one
    representative per cluster and report each other member's similarity to it."""
    found = UnionFind()
    # Each pair's similarity is computed once: most representative-member pairs were candidates.
    known: dict[tuple[int, int], float] = {}
    for a, b in pairs:
        s = known[(a, b) if a < b else (b, a)] = similarity(a, b)
        if s >= threshold:
            found.union(a, b)

    def to_representative(representative: int, member: int) -> float:
        key = (representative, member) if representative < member else (member, representative)
        if key not in known:
            known[key] = similarity(representative, member)
        return known[key]

    clusters = []
    for members in found.groups():
        representative = choose_representative(members)
        clusters.append(Cluster(members, representative, {
            m: to_representative(representative, m) for m in members if m != representative}))
    clusters.sort(key=lambda c: c.members[0])
    return clusters

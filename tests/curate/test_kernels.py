"""The compiled loops against plain references (the signatures themselves are checked against
datasketch in test_minhash.py)."""

import numpy as np

from curate import kernels, minhash
from curate.minhash import ShingleScheme
from curate.neardup import _band_buckets

from .test_minhash import TEXTS


def test_band_mixes_are_equal_exactly_for_equal_rows():
    rng = np.random.default_rng(1)
    sigs = rng.integers(0, 50, size=(400, 12), dtype=np.uint32)  # small values: many equal rows
    mixes = kernels.band_mixes(sigs, 4, 3)
    assert mixes.shape == (400, 4) and mixes.dtype == np.uint64
    for band in range(4):
        rows = [tuple(r) for r in sigs[:, band * 3:band * 3 + 3]]
        by_row = {}
        for row, mix in zip(rows, mixes[:, band].tolist()):
            assert by_row.setdefault(row, mix) == mix
        assert len(set(by_row.values())) == len(by_row)  # no collisions at this size


def test_band_order_falls_back_to_the_rows_when_mixes_collide():
    block = np.array([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]], np.uint32)
    order, same = _band_buckets(block, np.zeros(len(block), np.uint64))  # every row the same mix
    ordered = [tuple(block[i]) for i in order]
    assert sorted(ordered) == sorted(map(tuple, block))
    assert same.tolist() == [ordered[k] == ordered[k - 1] for k in range(1, len(ordered))]
    assert same.tolist().count(False) == 2  # three runs: equal rows are next to each other


def test_band_buckets_by_mix_when_mixes_do_not_collide():
    block = np.array([[1, 2], [3, 4], [1, 2], [5, 6]], np.uint32)
    order, same = _band_buckets(block, kernels.band_mixes(block, 1, 2)[:, 0])
    ordered = [tuple(block[i]) for i in order]
    assert same.tolist() == [ordered[k] == ordered[k - 1] for k in range(1, len(ordered))]
    assert same.sum() == 1


def test_shingle_hashes_match_the_reference_bytes():
    import xxhash

    scheme = ShingleScheme("word", 4)
    hashes, counts = minhash.shingle_hashes(TEXTS, scheme)
    assert len(counts) == len(TEXTS) and counts.sum() == len(hashes)
    offset = 0
    for text, count in zip(TEXTS, counts):
        reference = [xxhash.xxh32_intdigest(b) for b in minhash.shingle_bytes(minhash.tokens(text, "word"), 4)]
        assert hashes[offset:offset + count].tolist() == reference, text[:40]
        offset += count


def test_mixed_ascii_and_unicode_batches_keep_their_order():
    texts = ["plain ascii words here", "ünïcödé wörds here", "", "more ascii", "Ｆｕｌｌ width"]
    flat, counts = minhash._flat_tokens(texts, "word")
    assert counts.tolist() == [len(minhash.tokens(t, "word")) for t in texts]
    assert flat.tolist() == [h for t in texts for h in minhash.tokens(t, "word").tolist()]

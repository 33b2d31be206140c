"""The vectorised signatures equal datasketch's own, for every shingle scheme."""

import numpy as np
import pytest
import xxhash

from curate import kernels, minhash
from curate.minhash import ShingleScheme
from curate.normalize import exact_key, normalize_text

from .corpus_text import document, edited

TEXTS = [document(i) for i in range(40)] + [
    "", "one", "two words", "Ｆｕｌｌ-width ＴＥＸＴ and ﬁ ligature", "tab\tand\nnew line  here ok",
    "ünïcödé wörds — with dashes and emoji 🎉 inside them, repeated repeated repeated",
    edited(document(3), 9), "a b c d e", "a b c d e f",
]


@pytest.mark.parametrize("scheme", [
    ShingleScheme("word", 5, 128, 1),
    ShingleScheme("word", 3, 64, 42),
    ShingleScheme("word", 1, 32, 7),
    ShingleScheme("word", 9, 256, 3),
    ShingleScheme("char", 5, 128, 1),
    ShingleScheme("char", 3, 64, 99),
])
def test_signatures_equal_datasketch_minhash(scheme):
    fast = minhash.signatures(TEXTS, scheme)
    assert fast.shape == (len(TEXTS), scheme.num_perm) and fast.dtype == np.uint32
    for row, text in zip(fast, TEXTS):
        reference = minhash.datasketch_minhash(text, scheme)
        assert reference.scheme == "affine32"
        assert np.array_equal(row, reference.hashvalues), text[:40]


def test_compiled_xxh32_equals_xxhash_for_every_length():
    rng = np.random.default_rng(0)
    for n in range(1, 13):
        lanes = rng.integers(0, 2**32, size=(50, n), dtype=np.uint64).astype(np.uint32)
        flat = lanes.ravel()
        fast = [kernels._xxh32_bytes(flat.view(np.uint8), 4 * row * n, 4 * n) for row in range(len(lanes))]
        slow = [xxhash.xxh32_intdigest(row.astype("<u4").tobytes()) for row in lanes]
        assert fast == slow
    data = rng.integers(0, 256, size=100, dtype=np.uint8)
    for length in range(0, 40):  # both XXH32 paths: under 16 bytes, and 16-byte stripes
        assert kernels._xxh32_bytes(data, 3, length) == xxhash.xxh32_intdigest(data[3:3 + length].tobytes())


def test_jaccard_of_sorted_sets():
    a, b = np.array([1, 3, 5, 7], np.uint32), np.array([3, 4, 5], np.uint32)
    assert minhash.jaccard(a, b) == 2 / 5 and minhash.jaccard(a, a) == 1.0
    assert minhash.jaccard(a[:0], b[:0]) == 1.0 and minhash.jaccard(a, b[:0]) == 0.0


def test_signature_bytes_round_trip_and_empty_text():
    scheme = ShingleScheme()
    sigs = minhash.signatures(["", document(1)], scheme)
    assert np.all(sigs[0] == minhash.EMPTY_HASH)
    assert np.array_equal(minhash.from_bytes(minhash.to_bytes(sigs[1])), sigs[1])
    assert len(minhash.to_bytes(sigs[1])) == 4 * scheme.num_perm


def test_normalisation_nfkc_case_and_whitespace():
    assert normalize_text("  Ｈｅｌｌｏ\u00a0 WORLD\t\n ﬁne ") == "hello world fine"
    assert exact_key("Hello   world") == exact_key("hello world") != exact_key("hello worlds")


def test_minhash_estimate_tracks_true_jaccard():
    scheme = ShingleScheme(num_perm=256)
    a, b = document(5, 200), edited(document(5, 200), 1, 0.05)
    sig = minhash.signatures([a, b], scheme)
    estimate = float(np.mean(sig[0] == sig[1]))
    exact = minhash.jaccard(minhash.shingle_set(a, scheme), minhash.shingle_set(b, scheme))
    assert 0.5 < exact < 0.95 and abs(estimate - exact) < 0.1


def test_batch_word_hashing_equals_one_text_at_a_time():
    texts = TEXTS + ["averyveryverylongwordofmorethansixteenbytes and short ones",
                     "\x1cunit\x1fseparators split too", "   leading and trailing   ", "x"]
    batch = minhash.token_arrays(texts, "word")
    for text, arr in zip(texts, batch):
        assert arr.tolist() == minhash.tokens(text, "word").tolist(), text


def test_batch_shingle_sets_equal_one_at_a_time():
    for scheme in (ShingleScheme("word", 5), ShingleScheme("char", 4)):
        for text, batch in zip(TEXTS, minhash.shingle_sets(TEXTS, scheme)):
            assert batch.tolist() == minhash.shingle_set(text, scheme).tolist()


def test_threaded_signatures_equal_one_thread():
    scheme = ShingleScheme()
    texts = TEXTS * 3
    one = minhash.signatures(texts, scheme, threads=1)
    assert np.array_equal(minhash.signatures(texts, scheme, threads=2, share=10), one)
    assert np.array_equal(minhash.signatures(texts, scheme, threads=7, share=1), one)  # uneven shares
    assert minhash.signatures([], scheme, threads=2).shape == (0, scheme.num_perm)

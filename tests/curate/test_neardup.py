"""Near-duplicate detection without the database: banding, verification, index agreement."""

import numpy as np
import pytest

from curate import minhash
from curate.minhash import ShingleScheme
from curate.neardup import (
    LSHParams,
    candidate_pairs,
    candidate_probability,
    choose_bands,
    verified_clusters,
)
from curate.steps_dedup import contamination_matches

from .conftest import REDIS_URL
from .corpus_text import document, edited


def planted_corpus(originals=60, copies_per=2):
    texts, truth = [], set()
    for i in range(originals):
        texts.append(document(1000 + i))
    for i in range(0, originals, 3):  # every third original gets near copies
        for c in range(copies_per):
            texts.append(edited(texts[i], seed=i * 10 + c, fraction=0.01))
            truth.add((i, len(texts) - 1))
    return texts, truth


def test_bands_chosen_for_recall_beat_datasketch_default():
    bands, rows = choose_bands(128, 0.8)
    assert bands * rows <= 128
    assert candidate_probability(0.8, bands, rows) >= 0.99
    # datasketch's own choice for 0.8 / 128 permutations is 9 x 13.
    assert candidate_probability(0.8, 9, 13) < 0.5


@pytest.mark.parametrize("verify", ["jaccard", "minhash"])
def test_planted_near_duplicates_are_found(verify):
    scheme = ShingleScheme()
    texts, truth = planted_corpus()
    sigs = minhash.signatures(texts, scheme)
    params = LSHParams.for_recall(scheme, 0.8)
    keys = np.arange(len(texts))
    pairs = candidate_pairs(keys, sigs, params, "memory")
    sets = {i: minhash.shingle_set(t, scheme) for i, t in enumerate(texts)}
    if verify == "jaccard":
        def sim(a, b):
            return minhash.jaccard(sets[a], sets[b])
    else:
        def sim(a, b):
            return float(np.mean(sigs[a] == sigs[b]))
    clusters = verified_clusters(pairs, sim, 0.8, min)
    found = {(c.representative, m) for c in clusters for m in c.members if m != c.representative}
    assert found == truth
    assert all(c.representative == min(c.members) for c in clusters)
    assert all(s >= 0.8 for c in clusters for s in c.similarity.values())


def test_memory_datasketch_and_redis_indexes_give_the_same_pairs(redis_index):
    scheme = ShingleScheme()
    texts, _ = planted_corpus(30)
    sigs = minhash.signatures(texts, scheme)
    params = LSHParams.for_recall(scheme, 0.8)
    keys = np.arange(1, len(texts) + 1)
    memory = candidate_pairs(keys, sigs, params, "memory")
    in_dict = candidate_pairs(keys, sigs, params, "datasketch")
    redis = candidate_pairs(keys, sigs, params, "redis", redis_url=REDIS_URL,
                            redis_basename=f"{redis_index}:idx")
    assert memory and memory == in_dict == redis
    # A second pass finds the same pairs with everything already stored in Redis.
    again = candidate_pairs(keys, sigs, params, "redis", redis_url=REDIS_URL,
                            redis_basename=f"{redis_index}:idx")
    assert again == memory


def test_contamination_between_two_sets():
    train = [document(i) for i in range(30)]
    test = [edited(train[4], 1, 0.01), document(999), edited(train[17], 2, 0.01), document(998)]
    config = {"unit": "word", "n": 5, "num_perm": 128, "seed": 1, "threshold": 0.8}
    matches = contamination_matches(test, train, config)
    assert [(a, b) for a, b, _ in matches] == [(0, 4), (2, 17)]
    assert all(sim >= 0.8 for *_, sim in matches)


def test_memory_index_big_bucket_chains_and_pairs():
    from curate.neardup import LSHParams, candidate_pairs_memory

    scheme = minhash.ShingleScheme()
    base = minhash.signatures(["one two three four five six seven", "alpha beta gamma delta eps"], scheme)
    # 40 copies of the first signature (a chained bucket) and 3 of the second (all pairs).
    sigs = np.concatenate([np.repeat(base[:1], 40, axis=0), np.repeat(base[1:], 3, axis=0)])
    keys = np.arange(100, 100 + len(sigs))
    pairs = candidate_pairs_memory(keys, sigs, LSHParams(scheme, 0.8, 16, 8))
    assert {(140, 141), (140, 142), (141, 142)} <= pairs
    assert all(a < b for a, b in pairs) and not any(a < 140 <= b for a, b in pairs)
    assert {(100, k) for k in range(101, 140)} <= pairs and len(pairs) == 39 + 38 + 3

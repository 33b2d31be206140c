"""Curation speed and quality: near-duplicates and PII, against the naive ways, in one run.

    python bench/curation_bench.py            # 20,000 near-dup docs, 1,000 PII docs
    python bench/curation_bench.py --quick    # 4,000 and 300

Near-duplicates: ~200-word documents from a Zipf vocabulary; 10% of the originals get 1-3
copies with a few % of their words edited. End to end = tokenise + shingle + sign (2 threads)
+ LSH banding + exact-Jaccard verification + clusters. Truth: planted pairs whose true Jaccard
(word 5-gram shingles) is >= 0.8 (random documents of this vocabulary share no 5-grams).
Baseline on a sample: datasketch's per-shingle `update()` loop and a default
MinHashLSH(threshold=0.8), its query results taken as the answer.

PII: ~200-word documents with 1-4 planted entities each (every kind, Mastercard 2-series
included) and PII-free technical documents with hard negatives (version strings, netmasks,
part numbers, order numbers, organisations, dates, code). Ours: NER-only spaCy over windows
around capitalised words, batched, 2 processes. Baseline on a sample: Presidio's default
AnalyzerEngine (all recognizers, full spaCy pipeline of the same model) called once per
document. Both report CPU ms per document too (summed over processes): on a shared machine
docs/s swing with the load, CPU time much less.

Goals (issue 4): near-dup >= 25,000 docs/s, recall and precision >= 0.95; PII >= 200 docs/s
and >= 10x the default, recall >= 0.99 per structured entity and >= 0.95 on persons, <= 0.05
false positives per PII-free document. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "winnow.settings")

import numpy as np  # noqa: E402

# -- near-duplicate corpus -------------------------------------------------------------------


def vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10))))
    return sorted(words)


def near_dup_corpus(n: int, seed: int = 0):
    """(texts, families): families are lists of indices planted as copies of one original."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    originals = int(n / 1.2)
    texts = [" ".join(rng.choices(vocab, weights, k=rng.randint(180, 220))) for _ in range(originals)]
    families = []
    sources = rng.sample(range(originals), originals)
    while len(texts) < n:
        source = sources.pop()  # each original is copied at most once: one family per source
        family = [source]
        for _ in range(rng.randint(1, 3)):
            if len(texts) >= n:
                break
            words = texts[source].split()
            for i in rng.sample(range(len(words)), max(1, int(len(words) * rng.uniform(0.002, 0.03)))):
                words[i] = rng.choice(vocab)
            texts.append(" ".join(words))
            family.append(len(texts) - 1)
        if len(family) > 1:
            families.append(family)
    # Shuffle, so a prefix sample holds originals and copies alike.
    order = list(range(len(texts)))
    rng.shuffle(order)
    position = {old: new for new, old in enumerate(order)}
    texts = [texts[old] for old in order]
    families = [sorted(position[i] for i in family) for family in families]
    return texts, families


def true_pairs(texts, families, scheme, threshold):
    from curate import minhash

    truth, borderline = set(), 0
    for family in families:
        sets = {i: minhash.shingle_set(texts[i], scheme) for i in family}
        for a in family:
            for b in family:
                if a < b:
                    if minhash.jaccard(sets[a], sets[b]) >= threshold:
                        truth.add((a, b))
                    else:
                        borderline += 1
    return truth, borderline


def ours_near_dup(texts, scheme, threshold, processes):
    from curate import minhash
    from curate.neardup import LSHParams, candidate_pairs, verified_clusters

    started = time.perf_counter()
    sigs = minhash.signatures(texts, scheme, threads=processes)
    signed = time.perf_counter()
    params = LSHParams.for_recall(scheme, threshold)
    pairs = candidate_pairs(np.arange(len(texts)), sigs, params, "memory")
    banded = time.perf_counter()
    wanted = sorted({k for pair in pairs for k in pair})
    sets = dict(zip(wanted, minhash.shingle_sets([texts[k] for k in wanted], scheme)))

    def similarity(a, b):
        for k in (a, b):
            if k not in sets:
                sets[k] = minhash.shingle_set(texts[k], scheme)
        return minhash.jaccard(sets[a], sets[b])

    verified = set()

    def remember(a, b):
        s = similarity(a, b)
        if s >= threshold:
            verified.add((min(a, b), max(a, b)))
        return s

    clusters = verified_clusters(pairs, remember, threshold, min)
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "stages_s": {"sign": round(signed - started, 3), "band": round(banded - signed, 3),
                     "verify_cluster": round(done - banded, 3)},
        "pairs": verified, "candidates": len(pairs), "clusters": len(clusters),
        "bands_rows": [params.bands, params.rows],
    }


def naive_near_dup(texts, scheme, threshold):
    from datasketch import MinHash, MinHashLSH

    from curate import minhash

    started = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=scheme.num_perm)
    sketches = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=scheme.num_perm, seed=scheme.seed)
        for shingle in minhash.shingle_bytes(minhash.tokens(text, scheme.unit), scheme.n):
            m.update(shingle)
        sketches.append(m)
        lsh.insert(i, m)
    found = set()
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i:
                found.add((min(i, j), max(i, j)))
    return {"seconds": time.perf_counter() - started, "pairs": found, "bands_rows": [lsh.b, lsh.r]}


def score(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    recall = hit / len(truth) if truth else 1.0
    precision = hit / len(found) if found else 1.0
    return recall, precision


def bench_near_dup(n: int, sample: int, processes: int) -> dict:
    from curate.minhash import ShingleScheme

    scheme, threshold = ShingleScheme("word", 5, 128, 1), 0.8
    texts, families = near_dup_corpus(n)
    truth, borderline = true_pairs(texts, families, scheme, threshold)
    ours_near_dup(texts[:500], scheme, threshold, 1)  # warm imports
    ours = ours_near_dup(texts, scheme, threshold, processes)
    recall, precision = score(ours["pairs"], truth)

    # The baseline on a sample: the first `sample` documents and the planted pairs inside it.
    sample_truth = {(a, b) for a, b in truth if b < sample}
    naive = naive_near_dup(texts[:sample], scheme, threshold)
    naive_recall, naive_precision = score(naive["pairs"], sample_truth)
    ours_sample = ours_near_dup(texts[:sample], scheme, threshold, processes)
    sample_recall, sample_precision = score(ours_sample["pairs"], sample_truth)
    docs_per_s = n / ours["seconds"]
    naive_docs_per_s = sample / naive["seconds"]
    return {
        "docs": n, "true_pairs": len(truth), "planted_pairs_below_threshold": borderline,
        "docs_per_s": round(docs_per_s), "stages_s": ours["stages_s"],
        "candidates": ours["candidates"], "bands_rows": ours["bands_rows"],
        "recall": round(recall, 4), "precision": round(precision, 4),
        "baseline_sample": sample, "baseline_docs_per_s": round(naive_docs_per_s),
        "baseline_bands_rows": naive["bands_rows"],
        "baseline_recall": round(naive_recall, 4), "baseline_precision": round(naive_precision, 4),
        "ours_on_sample_recall": round(sample_recall, 4),
        "ours_on_sample_precision": round(sample_precision, 4),
        "speedup": round(docs_per_s / naive_docs_per_s, 1),
    }


# -- PII corpus ------------------------------------------------------------------------------

FIRST = ("James Mary Robert Patricia Michael Jennifer William Linda David Elizabeth Richard "
         "Barbara Joseph Susan Thomas Jessica Charles Sarah Daniel Karen Matthew Nancy Anthony "
         "Lisa Mark Betty Steven Margaret Andrew Sandra Joshua Ashley Kevin Emily Brian Donna "
         "George Michelle Timothy Carol Ronald Amanda Jason Melissa Jeffrey Deborah Ryan "
         "Stephanie Jacob Rebecca Gary Sharon Nicholas Laura Eric Cynthia Jonathan Kathleen").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
        "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
        "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
        "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
        "Roberts").split()
FILLER = ("the system stores each request in a queue and the worker processes it later when "
          "the load is low so that users see fast responses while reports are built in the "
          "background and errors are retried with a short delay before anyone is notified about "
          "them by the monitoring service that watches the cluster").split()
TECH = [
    "Upgrade the agent to version {v} before the maintenance window.",
    "Set the subnet mask to 255.255.255.0 and use the gateway 192.168.{a}.1 on the LAN.",
    "Replacement part no. {p} fits the older pumps.",
    "Order {o} was packed by the warehouse team on Monday.",
    "Microsoft, Google and Amazon announced the change on March {d}, 2024.",
    "Call np.mean(values, axis=0) and numpy.array(rows) to build the matrix.",
    "Run docker compose up -d and open localhost:8080 in the browser.",
    "The build uses Python 3.11, Django 5.2 and PostgreSQL 16 on Debian.",
    "Release {v} fixes a memory leak in the parser and speeds up start-up by {d}%.",
    "The API returns HTTP 429 when more than {d} requests arrive per second.",
    "Kubernetes restarts a pod when its liveness probe fails three times.",
    "Store the checksum as a 64-character hex string in the manifest file.",
]


def luhn_complete(prefix: str, length: int, rng) -> str:
    from curate.pii import luhn_valid

    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in string.digits:
        if luhn_valid(body + d):
            return body + d
    raise AssertionError


def iban_de(rng) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(18))
    numeric = int(bban + "131400")  # D=13, E=14, check digits 00
    return f"DE{98 - numeric % 97:02d}{bban}"


def ssn(rng) -> str:
    while True:
        area, group, serial = rng.randint(1, 899), rng.randint(1, 99), rng.randint(1, 9999)
        if area != 666 and len({*f"{area:03d}{group:02d}{serial:04d}"}) > 2:
            return f"{area:03d}-{group:02d}-{serial:04d}"


def entity_value(kind: str, rng) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    if kind == "EMAIL":
        return f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(['example.com', 'mail.org', 'corp.net'])}"
    if kind == "PHONE":
        area, mid, end = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
        return rng.choice([f"({area}) {mid}-{end:04d}", f"{area}-{mid}-{end:04d}",
                           f"+1 {area} {mid} {end:04d}"])
    if kind == "CREDIT_CARD":
        number = rng.choice([luhn_complete("4", 16, rng), luhn_complete(str(rng.randint(51, 55)), 16, rng),
                             luhn_complete(str(rng.randint(2221, 2720)), 16, rng)])
        return " ".join(number[i:i + 4] for i in range(0, 16, 4)) if rng.random() < 0.5 else number
    if kind == "IBAN":
        return iban_de(rng)
    if kind == "IP_ADDRESS":
        return f"{rng.choice([23, 45, 64, 81, 104, 151, 185, 203 + 0])}.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
    if kind == "US_SSN":
        return ssn(rng)
    if kind == "PERSON":
        return f"{first} {last}"
    if kind == "URL":
        return f"https://{rng.choice(['portal', 'docs', 'shop'])}.{last.lower()}.com/{rng.choice(['account', 'orders', 'help'])}/{rng.randint(1, 999)}"
    if kind == "SECRET":
        return rng.choice([
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "sk-proj-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32)),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "".join(
                rng.choice(string.ascii_letters + string.digits) for _ in range(43)),
        ])
    raise ValueError(kind)


CARRIERS = {
    "EMAIL": "Please send the signed form to {x} before Friday.",
    "PHONE": "For questions about the invoice call {x} during office hours.",
    "CREDIT_CARD": "The payment was charged to card {x} last week.",
    "IBAN": "Transfer the deposit to the account {x} by the end of the month.",
    "IP_ADDRESS": "Failed logins came from {x} according to the firewall log.",
    "US_SSN": "The applicant listed social security number {x} on the form.",
    "PERSON": "The request was approved yesterday by {x} after a short review.",
    "URL": "The full report is available at {x} for registered users.",
    "SECRET": "The deploy script still contains the key {x} in plain text.",
}


def filler(rng, words: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(words)).capitalize() + "."


def pii_corpus(n: int, seed: int = 1):
    rng = random.Random(seed)
    docs, planted = [], []
    kinds = list(CARRIERS)
    for i in range(n):
        parts, spans, text = [], [], ""
        chosen = [kinds[(i + k) % len(kinds)] for k in range(rng.randint(1, 4))]
        for kind in chosen:
            parts.append(filler(rng, rng.randint(20, 45)))
            value = entity_value(kind, rng)
            parts.append(CARRIERS[kind].replace("{x}", value))
        parts.append(filler(rng, 30))
        for part in parts:
            text += part + " "
        for kind in chosen:
            pass
        doc = text.strip()
        # Locate each planted value (in order) to know its span.
        cursor = 0
        for kind, part in zip(chosen, parts[1::2]):
            prefix, _, rest = CARRIERS[kind].partition("{x}")
            value_start = doc.index(part, cursor) + len(prefix)
            value_end = value_start + len(part) - len(prefix) - len(rest)
            spans.append((kind, value_start, value_end))
            cursor = value_end
        docs.append(doc)
        planted.append(spans)
    clean = []
    for i in range(n):
        sentences = []
        while sum(len(s.split()) for s in sentences) < 190:
            template = rng.choice(TECH)
            sentences.append(template.format(
                v=f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
                a=rng.randint(0, 254), p=f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                o=rng.randint(10**8, 10**9 - 1), d=rng.randint(1, 28)))
            sentences.append(filler(rng, 15))
        clean.append(" ".join(sentences))
    return docs, planted, clean


def recall_per_entity(planted, found_lists) -> dict:
    hits, totals = {}, {}
    for spans, found in zip(planted, found_lists):
        for kind, start, end in spans:
            totals[kind] = totals.get(kind, 0) + 1
            if any(f[0] == kind and f[1] < end and f[2] > start for f in found):
                hits[kind] = hits.get(kind, 0) + 1
    return {k: round(hits.get(k, 0) / totals[k], 4) for k in sorted(totals)}


def default_presidio():
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from curate.pii import SPACY_MODEL, _patch_tldextract

    _patch_tldextract()  # the default would try to download the suffix list
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]})
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


DEFAULT_TO_SHORT = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
                    "IBAN_CODE": "IBAN", "IP_ADDRESS": "IP_ADDRESS", "US_SSN": "US_SSN",
                    "PERSON": "PERSON", "URL": "URL"}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the forked workers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def bench_pii(n: int, sample: int, processes: int) -> dict:
    from curate import pii

    docs, planted, clean = pii_corpus(n)
    pii.detect_batch(docs[:5])  # load the model before timing
    started, cpu_started = time.perf_counter(), cpu_seconds()
    found = pii.detect_many(docs + clean, processes=processes, chunk=64)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    ours_found = [[(f.entity, f.start, f.end) for f in fl] for fl in found[:n]]
    ours_fp = sum(len(fl) for fl in found[n:]) / len(clean)
    fp_kinds: dict[str, int] = {}
    for fl in found[n:]:
        for f in fl:
            fp_kinds[f.entity] = fp_kinds.get(f.entity, 0) + 1
    recall = recall_per_entity(planted, ours_found)

    engine = default_presidio()
    engine.analyze(text=docs[0], language="en")
    started, cpu_started = time.perf_counter(), cpu_seconds()
    base_found = []
    for doc in docs[:sample] + clean[:sample]:
        base_found.append([(DEFAULT_TO_SHORT.get(r.entity_type, r.entity_type), r.start, r.end)
                           for r in engine.analyze(text=doc, language="en")])
    base_seconds, base_cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    base_recall = recall_per_entity(planted[:sample], base_found[:sample])
    base_fp = sum(len(fl) for fl in base_found[sample:]) / sample
    docs_per_s = 2 * n / seconds
    base_docs_per_s = 2 * sample / base_seconds
    return {
        "docs": 2 * n, "docs_with_pii": n, "pii_free_docs": n, "docs_per_s": round(docs_per_s, 1),
        "cpu_ms_per_doc": round(cpu / (2 * n) * 1000, 2),
        "recall": recall, "false_positives_per_clean_doc": round(ours_fp, 4),
        "false_positive_kinds": fp_kinds,
        "baseline_sample": 2 * sample, "baseline_docs_per_s": round(base_docs_per_s, 1),
        "baseline_cpu_ms_per_doc": round(base_cpu / (2 * sample) * 1000, 2),
        "baseline_recall": base_recall,
        "baseline_false_positives_per_clean_doc": round(base_fp, 4),
        "speedup": round(docs_per_s / base_docs_per_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-pii", action="store_true")
    parser.add_argument("--skip-near-dup", action="store_true")
    args = parser.parse_args()
    import logging

    import django

    django.setup()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # the baseline's warnings
    near_n, near_sample = (4000, 1000) if args.quick else (20000, 2000)
    pii_n, pii_sample = (150, 40) if args.quick else (500, 100)
    out: dict = {"quick": args.quick, "processes": args.processes, "cpus": os.cpu_count()}
    goals: dict = {}
    if not args.skip_near_dup:
        near = bench_near_dup(near_n, near_sample, args.processes)
        print(f"near-dup: {near['docs_per_s']:,} docs/s end to end ({near['speedup']}x the naive "
              f"loop's {near['baseline_docs_per_s']:,}); recall {near['recall']}, precision "
              f"{near['precision']} (naive on {near_sample}: recall {near['baseline_recall']}, "
              f"precision {near['baseline_precision']})", flush=True)
        out["near_dup"] = near
        goals.update({
            "near_dup_docs_per_s_25000": near["docs_per_s"] >= 25000,
            "near_dup_recall_0.95": near["recall"] >= 0.95,
            "near_dup_precision_0.95": near["precision"] >= 0.95,
        })
    if not args.skip_pii:
        p = bench_pii(pii_n, pii_sample, args.processes)
        print(f"PII: {p['docs_per_s']} docs/s, {p['cpu_ms_per_doc']} CPU ms/doc ({p['speedup']}x "
              f"the default's {p['baseline_docs_per_s']}, {p['baseline_cpu_ms_per_doc']} CPU ms/doc); "
              f"recall {p['recall']}; false positives per clean doc "
              f"{p['false_positives_per_clean_doc']} (default {p['baseline_false_positives_per_clean_doc']})",
              flush=True)
        out["pii"] = p
        structured = [v for k, v in p["recall"].items() if k != "PERSON"]
        goals.update({
            "pii_docs_per_s_200": p["docs_per_s"] >= 200,
            "pii_10x_default": p["speedup"] >= 10,
            "pii_structured_recall_0.99": min(structured) >= 0.99,
            "pii_person_recall_0.95": p["recall"].get("PERSON", 0) >= 0.95,
            "pii_false_positives_0.05": p["false_positives_per_clean_doc"] <= 0.05,
        })
    out["goals"] = goals
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

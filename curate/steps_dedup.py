"""Pipeline steps: exact duplicates, near duplicates, and contamination against a reference."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from django.conf import settings
from rest_framework import serializers

from corpus.models import AuthorKind, CurationStatus, Feedback, Record, Response

from . import minhash
from .minhash import ShingleScheme
from .models import RecordSignature
from .neardup import LSHParams, candidate_pairs, minhash_similarity, verified_clusters
from .normalize import exact_key
from .pipeline import StepContext, step

POLICIES = ("earliest", "longest", "best_rated", "human_over_model")
SIGN_BATCH = 8000  # signed on every core at once (minhash.signatures threads over 2,000+ texts)


def record_text(record) -> str:
    """What duplicate detection compares for a record: the prompt and its context."""
    return f"{record.prompt}\n{record.context}" if record.context else record.prompt


# -- representative policies -----------------------------------------------------------------


def _ratings(record_ids=None, response_ids=None) -> dict[int, float]:
    """Mean normalised rating (0..1) per record id or per response id."""
    rows = Feedback.objects.filter(kind=Feedback.Kind.RATING)
    rows = rows.filter(record_id__in=record_ids) if record_ids is not None else rows.filter(
        record__responses__in=response_ids).distinct()
    sums: dict[int, list[float]] = defaultdict(list)
    for row in rows.only("record_id", "payload"):
        p = row.payload
        span = (p.get("scale_max", 5) - p.get("scale_min", 1)) or 1
        value = (p.get("value", 0) - p.get("scale_min", 1)) / span
        key = row.record_id if record_ids is not None else p.get("response")
        sums[key].append(value)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def record_policy(policy: str, records: dict[int, Record]):
    """A function choosing the record to keep among cluster members (ids)."""
    if policy == "longest":
        return lambda ids: min(ids, key=lambda i: (-len(record_text(records[i])), i))
    if policy == "best_rated":
        ratings = _ratings(record_ids=list(records))
        return lambda ids: min(ids, key=lambda i: (-ratings.get(i, -1.0), i))
    if policy == "human_over_model":
        human = set(Response.objects.filter(record_id__in=list(records), author_kind=AuthorKind.HUMAN)
                    .values_list("record_id", flat=True))
        return lambda ids: min(ids, key=lambda i: (i not in human, i))
    return min  # earliest: the lowest id was written first


def response_policy(policy: str, responses: dict[int, Response]):
    if policy == "longest":
        return lambda ids: min(ids, key=lambda i: (-len(responses[i].text), i))
    if policy == "best_rated":
        ratings = _ratings(response_ids=list(responses))
        return lambda ids: min(ids, key=lambda i: (-ratings.get(i, -1.0), i))
    if policy == "human_over_model":
        return lambda ids: min(ids, key=lambda i: (responses[i].author_kind != AuthorKind.HUMAN, i))
    return min


def _foreign_first(choose, own: set[int]):
    """Records of other datasets are never dropped here, so one of them is the representative
    whenever a cluster has any."""
    def choose_representative(ids):
        foreign = [i for i in ids if i not in own]
        return min(foreign) if foreign else choose(ids)
    return choose_representative


# -- exact duplicates ------------------------------------------------------------------------


class ExactDedupConfig(serializers.Serializer):
    target = serializers.ChoiceField(["prompts", "responses"], default="prompts")
    across_datasets = serializers.BooleanField(
        default=False, help_text="Also count kept records of other datasets as earlier copies")
    response_scope = serializers.ChoiceField(
        ["dataset", "record"], default="dataset",
        help_text="responses: duplicates anywhere in the dataset, or only under one record")
    policy = serializers.ChoiceField(POLICIES, default="earliest")


@step("exact_dedup", ExactDedupConfig,
      "Exact duplicates of normalised text (NFKC, case, whitespace), prompts or responses.")
def exact_dedup(ctx: StepContext, config: dict) -> dict:
    if config["target"] == "responses":
        return _exact_dedup_responses(ctx, config)
    records = {r.pk: r for r in ctx.kept_records().only(
        "id", "prompt", "context", "status", "status_reason", "dup_cluster")}
    own = set(records)
    groups: dict[str, list[int]] = defaultdict(list)
    for pk, record in records.items():
        groups[exact_key(record_text(record))].append(pk)
    if config["across_datasets"]:
        others = Record.objects.filter(status=CurationStatus.KEPT).exclude(dataset=ctx.dataset)
        for pk, prompt, context in others.values_list("id", "prompt", "context").iterator():
            key = exact_key(f"{prompt}\n{context}" if context else prompt)
            if key in groups:
                groups[key].append(pk)
    choose = _foreign_first(record_policy(config["policy"], records), own)
    sizes = Counter()
    for key, ids in groups.items():
        if len(ids) < 2:
            continue
        sizes[len(ids)] += 1
        representative = choose(ids)
        cluster = next((records[i].dup_cluster for i in ids if i in own and records[i].dup_cluster),
                       f"exact-{key[:16]}")
        where = "" if representative in own else " in another dataset"
        if representative in own:
            ctx.keep_representative(records[representative], "exact_duplicate", cluster, len(ids))
        for pk in ids:
            if pk != representative and pk in own:
                ctx.drop(records[pk], "exact_duplicate",
                         f"exact duplicate of record #{representative}{where} "
                         f"(cluster {cluster}, similarity 1.00)", cluster=cluster, similarity=1.0)
    ctx.progress(len(records), len(records))
    return {"cluster_sizes": {str(k): v for k, v in sorted(sizes.items())}}


def _exact_dedup_responses(ctx: StepContext, config: dict) -> dict:
    responses = {r.pk: r for r in ctx.kept_responses().only(
        "id", "record_id", "text", "author_kind", "status", "status_reason")}
    groups: dict[tuple, list[int]] = defaultdict(list)
    per_record = config["response_scope"] == "record"
    for pk, response in responses.items():
        groups[(response.record_id if per_record else 0, exact_key(response.text))].append(pk)
    choose = response_policy(config["policy"], responses)
    sizes = Counter()
    for (_, key), ids in groups.items():
        if len(ids) < 2:
            continue
        sizes[len(ids)] += 1
        representative = choose(ids)
        for pk in ids:
            if pk != representative:
                ctx.drop(responses[pk], "exact_duplicate_response",
                         f"exact duplicate of response #{representative} "
                         f"(cluster exact-{key[:16]}, similarity 1.00)",
                         cluster=f"exact-{key[:16]}", similarity=1.0)
    ctx.progress(len(responses), len(responses))
    return {"cluster_sizes": {str(k): v for k, v in sorted(sizes.items())}}


# -- near duplicates -------------------------------------------------------------------------


class MinHashConfig(serializers.Serializer):
    unit = serializers.ChoiceField(["word", "char"], default="word")
    n = serializers.IntegerField(min_value=1, max_value=32, default=5)
    num_perm = serializers.IntegerField(min_value=16, max_value=1024, default=128)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=1)
    threshold = serializers.FloatField(min_value=0.3, max_value=1.0, default=0.8)


def scheme_of(config: dict) -> ShingleScheme:
    return ShingleScheme(unit=config["unit"], n=config["n"], num_perm=config["num_perm"],
                         seed=config["seed"])


class NearDedupConfig(MinHashConfig):
    bands = serializers.IntegerField(min_value=2, required=False,
                                     help_text="Default: chosen for recall at the threshold")
    rows = serializers.IntegerField(min_value=1, required=False)
    verify = serializers.ChoiceField(["jaccard", "minhash"], default="jaccard",
                                     help_text="Exact Jaccard over shingles, or the MinHash estimate")
    index = serializers.ChoiceField(["memory", "datasketch", "redis"], default="memory")
    across_datasets = serializers.BooleanField(default=False)
    policy = serializers.ChoiceField(POLICIES, default="earliest")

    def validate(self, attrs):
        bands, rows = attrs.get("bands"), attrs.get("rows")
        if (bands is None) != (rows is None):
            raise serializers.ValidationError({"rows" if bands else "bands": "give bands and rows together"})
        if bands and bands * rows > attrs["num_perm"]:
            raise serializers.ValidationError({"bands": f"bands x rows = {bands * rows} exceeds num_perm {attrs['num_perm']}"})
        return attrs


def stored_signatures(records: dict[int, str], scheme: ShingleScheme, progress=None
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """Signatures of {record id: text}, read from RecordSignature where the text is unchanged and
    computed (and stored) otherwise. Returns (ids, signatures, how many were computed)."""
    ids = np.array(sorted(records), dtype=np.int64)
    hashes = {pk: exact_key(text) for pk, text in records.items()}
    have: dict[int, np.ndarray] = {}
    for chunk_start in range(0, len(ids), 5000):
        chunk = ids[chunk_start:chunk_start + 5000].tolist()
        for pk, text_hash, blob in RecordSignature.objects.filter(
                scheme=scheme.key, record_id__in=chunk).values_list("record_id", "text_hash", "signature"):
            if text_hash == hashes[pk]:
                have[pk] = minhash.from_bytes(bytes(blob))
    missing = [pk for pk in ids.tolist() if pk not in have]
    for start in range(0, len(missing), SIGN_BATCH):
        batch = missing[start:start + SIGN_BATCH]
        sigs = minhash.signatures([records[pk] for pk in batch], scheme)
        RecordSignature.objects.filter(scheme=scheme.key, record_id__in=batch).delete()
        RecordSignature.objects.bulk_create([
            RecordSignature(record_id=pk, scheme=scheme.key, text_hash=hashes[pk],
                            signature=minhash.to_bytes(sig)) for pk, sig in zip(batch, sigs)])
        for pk, sig in zip(batch, sigs):
            have[pk] = sig
        if progress:
            progress(start + len(batch), len(missing))
    sigs = np.stack([have[pk] for pk in ids.tolist()]) if len(ids) else np.empty((0, scheme.num_perm), np.uint32)
    return ids, sigs, len(missing)


def similarity_function(config: dict, scheme: ShingleScheme, texts: dict[int, str],
                        sig_of: dict[int, np.ndarray]):
    if config.get("verify", "jaccard") == "minhash":
        return lambda a, b: minhash_similarity(sig_of[a], sig_of[b])
    shingles: dict[int, np.ndarray] = {}

    def prepare(pairs) -> None:
        """Shingle every text of the candidate pairs in one batch."""
        wanted = sorted({k for pair in pairs for k in pair} - set(shingles))
        shingles.update(zip(wanted, minhash.shingle_sets([texts[k] for k in wanted], scheme)))

    def exact(a: int, b: int) -> float:
        for key in (a, b):
            if key not in shingles:
                shingles[key] = minhash.shingle_set(texts[key], scheme)
        return minhash.jaccard(shingles[a], shingles[b])

    exact.prepare = prepare
    return exact


def lsh_params(config: dict) -> LSHParams:
    return LSHParams.for_recall(scheme_of(config), config["threshold"], config.get("bands"),
                                config.get("rows"))


@step("near_dedup", NearDedupConfig,
      "Near duplicates: MinHash signatures (stored), LSH banding for recall, verified pairs, "
      "clusters with one kept representative.")
def near_dedup(ctx: StepContext, config: dict) -> dict:
    scheme = scheme_of(config)
    params = lsh_params(config)
    own_records = {r.pk: r for r in ctx.kept_records().only(
        "id", "prompt", "context", "status", "status_reason", "dup_cluster")}
    texts = {pk: record_text(r) for pk, r in own_records.items()}
    if config["across_datasets"]:
        others = Record.objects.filter(status=CurationStatus.KEPT).exclude(dataset=ctx.dataset)
        for pk, prompt, context in others.values_list("id", "prompt", "context").iterator():
            texts[pk] = f"{prompt}\n{context}" if context else prompt
    own = set(own_records)
    total = len(texts)
    ctx.progress(0, total)
    ids, sigs, computed = stored_signatures(
        texts, scheme, progress=lambda done, n: ctx.progress(done, n))
    pairs = candidate_pairs(ids, sigs, params, config["index"],
                            redis_url=settings.WINNOW_CURATE_REDIS_URL,
                            redis_basename=f"{settings.WINNOW_CURATE_REDIS_PREFIX}:{scheme.key}:"
                                           f"{params.bands}x{params.rows}")
    # Two records of other datasets are not this run's business.
    pairs = {(a, b) for a, b in pairs if a in own or b in own}
    sig_of = dict(zip(ids.tolist(), sigs))
    similarity = similarity_function(config, scheme, texts, sig_of)
    if hasattr(similarity, "prepare"):
        similarity.prepare(pairs)
    choose = _foreign_first(record_policy(config["policy"], own_records), own)
    clusters = verified_clusters(pairs, similarity, config["threshold"], choose)
    sizes = Counter()
    for number, cluster in enumerate(clusters, start=1):
        sizes[len(cluster.members)] += 1
        name = next((own_records[m].dup_cluster for m in cluster.members
                     if m in own and own_records[m].dup_cluster), f"near-{ctx.run.pk}-{number}")
        rep = cluster.representative
        where = "" if rep in own else " in another dataset"
        if rep in own:
            ctx.keep_representative(own_records[rep], "near_duplicate", name, len(cluster.members))
        for member in cluster.members:
            if member == rep or member not in own:
                continue
            sim = cluster.similarity[member]
            ctx.drop(own_records[member], "near_duplicate",
                     f"near duplicate of record #{rep}{where} in cluster {name} "
                     f"(Jaccard {sim:.2f})", cluster=name, similarity=sim)
    ctx.progress(total, total)
    return {
        "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "clusters": len(clusters),
        "candidate_pairs": len(pairs),
        "signatures_computed": computed,
        "signatures_reused": len(ids) - computed,
        "bands": params.bands, "rows": params.rows, "index": config["index"],
    }


# -- contamination ---------------------------------------------------------------------------


class ContaminationConfig(MinHashConfig):
    reference_dataset = serializers.IntegerField(required=False, min_value=1)
    reference_texts = serializers.ListField(child=serializers.CharField(allow_blank=True),
                                            required=False, allow_empty=False, max_length=1_000_000)
    reference_name = serializers.CharField(required=False, default="reference set")
    action = serializers.ChoiceField(["drop", "flag"], default="drop")

    def validate_reference_dataset(self, value):
        from corpus.models import Dataset

        if not Dataset.objects.filter(pk=value).exists():
            raise serializers.ValidationError(f"no dataset {value}")
        return value

    def validate(self, attrs):
        if ("reference_dataset" in attrs) == ("reference_texts" in attrs):
            raise serializers.ValidationError(
                {"reference_dataset": "give exactly one of reference_dataset and reference_texts"})
        return attrs


def contamination_matches(texts_a: list[str], texts_b: list[str], config: dict
                          ) -> list[tuple[int, int, float]]:
    """(index in a, index in b, Jaccard) for every pair across the two sets at or above the
    threshold: e.g. a test split against a train split, or a dataset against a benchmark."""
    scheme = scheme_of(config)
    params = lsh_params(config)
    sigs = minhash.signatures(texts_a + texts_b, scheme)
    keys = np.arange(len(texts_a) + len(texts_b), dtype=np.int64)
    pairs = sorted((a, b) for a, b in candidate_pairs(keys, sigs, params, "memory")
                   if (a < len(texts_a)) != (b < len(texts_a)))
    everything = texts_a + texts_b
    wanted = sorted({k for pair in pairs for k in pair})
    shingles = dict(zip(wanted, minhash.shingle_sets([everything[k] for k in wanted], scheme)))
    out = []
    for a, b in pairs:
        sim = minhash.jaccard(shingles[a], shingles[b])
        if sim >= config["threshold"]:
            out.append((a, b - len(texts_a), sim))
    return out


@step("contamination", ContaminationConfig,
      "Records near-duplicating a reference set (another dataset, or benchmark texts).")
def contamination(ctx: StepContext, config: dict) -> dict:
    records = list(ctx.kept_records().only("id", "prompt", "context", "status", "status_reason",
                                           "dup_cluster"))
    if "reference_dataset" in config:
        reference = [record_text(r) for r in Record.objects.filter(
            dataset_id=config["reference_dataset"]).only("prompt", "context")]
        name = f"dataset #{config['reference_dataset']}"
    else:
        reference = config["reference_texts"]
        name = config["reference_name"]
    ctx.progress(0, len(records))
    matches = contamination_matches([record_text(r) for r in records], reference, config)
    best: dict[int, tuple[int, float]] = {}
    for a, b, sim in matches:
        if a not in best or sim > best[a][1]:
            best[a] = (b, sim)
    for index, (ref_index, sim) in sorted(best.items()):
        record = records[index]
        reason = (f"contaminated: near duplicate of item {ref_index} of {name} "
                  f"(Jaccard {sim:.2f})")
        if config["action"] == "drop":
            ctx.drop(record, "contamination", reason, similarity=sim,
                     details={"reference_index": ref_index})
        else:
            ctx.flag(record, "contamination", reason, details={"reference_index": ref_index,
                                                               "similarity": sim})
    ctx.progress(len(records), len(records))
    return {"contaminated": len(best), "reference_size": len(reference)}

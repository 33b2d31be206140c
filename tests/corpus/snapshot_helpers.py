"""Hand-made records, responses and feedback for the snapshot tests, and a one-call build."""

import json

from corpus.models import Feedback, Record, Response
from corpus.snapshots.job import build_files, start_snapshot_build


def record(dataset, prompt, *texts, context="", history=None, status="kept", dup_cluster="",
           source="", response_kw=None):
    rec = Record.objects.create(dataset=dataset, prompt=prompt, context=context,
                                history=history or [], status=status, dup_cluster=dup_cluster,
                                source=source)
    responses = [Response.objects.create(record=rec, text=t, author_kind="model", model_name="gen-1",
                                         **(response_kw or {})) for t in texts]
    return rec, [r.pk for r in responses]


def feedback(rec, kind, payload, user=None, model=None, **provenance):
    if kind == "rating":
        payload = {"scale_min": 1, "scale_max": 5, "aspect": "overall", "rationale": "", **payload}
    if kind == "pairwise":
        payload = {"strength": None, "margin": None, **payload}
    if model:
        provenance = {"method": "llm_judge", "provider": 1, "job": 1, **provenance}
    return Feedback.objects.create(record=rec, kind=kind, payload=payload,
                                   author_kind="model" if model else "human", author=user,
                                   model_name=model or "", provenance=provenance)


def annotation(item, question="q", **extra):
    """Provenance of a human annotation row (the annotate app's contract)."""
    return {"annotation_project": 1, "question": question, "item": item, "gold": False,
            "role": "annotator", "response_order": [], **extra}


def build(dataset, kind, **sections):
    recipe = {"kind": kind, "sources": {"datasets": [dataset.name]},
              "split": {"test_fraction": 0.0, "seed": 1}, **sections}
    snapshot = start_snapshot_build(recipe, enqueue=False)
    built = build_files(snapshot)
    snapshot.counts = built["counts"]
    return snapshot, read_rows(snapshot, "train"), built


def read_rows(snapshot, split):
    path = snapshot.directory / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def ordered(rows):
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))

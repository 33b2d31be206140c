"""The rule judge: compares a record's model responses pairwise by a rule (training.rewards,
e.g. `max_sentences:3`) and stores its verdicts as pairwise Feedback, beside the LLM judge's.

It votes the way the LLM judge does, once in each order, so that in a majority vote the two
judges weigh the same; a rule has no position bias, so its two votes always agree. The voter
is `model:rule:<rule>` (model_name `rule:<rule>`), provenance
{"method": "rule_judge", "rule": ..., "swapped": bool}. Judging again replaces its earlier
verdicts on the same records.
"""

from __future__ import annotations

from itertools import combinations

from django.db import transaction

from corpus.models import AuthorKind, Feedback, Response
from training.rewards import judge_pair, parse_judge_rule

METHOD = "rule_judge"


def judge_dataset(dataset, rule: str, *, max_pairs_per_record: int = 6) -> dict:
    """Judge every kept record of `dataset`; returns counts."""
    parse_judge_rule(rule)  # ValueError names the known rules
    model_name = f"rule:{rule}"
    responses = (Response.objects.filter(record__dataset=dataset, record__status="kept", status="kept")
                 .order_by("record_id", "id").only("id", "record_id", "text"))
    by_record: dict[int, list[Response]] = {}
    for response in responses:
        by_record.setdefault(response.record_id, []).append(response)
    rows, decisive = [], 0
    for record_id, group in by_record.items():
        for first, second in list(combinations(group, 2))[:max_pairs_per_record]:
            verdict = judge_pair(rule, first.text, second.text)
            choice = {"first": "a", "second": "b", "tie": "tie"}[verdict]
            decisive += choice != "tie"
            for swapped in (False, True):
                rows.append(Feedback(
                    record_id=record_id, kind=Feedback.Kind.PAIRWISE,
                    payload={"a": first.pk, "b": second.pk, "choice": choice},
                    author_kind=AuthorKind.MODEL, model_name=model_name,
                    provenance={"method": METHOD, "rule": rule, "swapped": swapped,
                                "shown": [second.pk, first.pk] if swapped else [first.pk, second.pk]},
                ))
    with transaction.atomic():
        Feedback.objects.filter(record_id__in=list(by_record), model_name=model_name,
                                provenance__method=METHOD).delete()
        Feedback.objects.bulk_create(rows, batch_size=1000)
    return {"records": len(by_record), "pairs": len(rows) // 2, "decisive": decisive,
            "feedback": len(rows)}

"""What managers and reviewers read: progress, agreement per question and annotator, the
disagreements to review, gold accuracy. Computed from the submissions (excluded work and
gold items left out of agreement)."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from statistics import mean

from django.db.models import Count, Q, Sum

from . import agreement as ag
from .models import AnnotationProject, Assignment, Item, ProjectMember, Review

RATING_DISAGREEMENT = 2  # ratings this many points apart (or more) send an item to review


def submissions(project: AnnotationProject, gold: bool | None = False):
    rows = Assignment.objects.filter(project=project, status=Assignment.Status.SUBMITTED)
    if gold is not None:
        rows = rows.filter(item__is_gold=gold)
    return rows.select_related("annotator", "item").order_by("submitted_at", "id")


def progress(project: AnnotationProject) -> dict:
    items = Item.objects.filter(project=project, is_gold=False)
    totals = items.aggregate(items=Count("id"), done=Sum("submitted"),
                             complete=Count("id", filter=Q(submitted__gte=project.overlap)),
                             started=Count("id", filter=Q(submitted__gt=0)))
    total = totals["items"] or 0
    wanted = total * project.overlap
    done = totals["done"] or 0
    per = defaultdict(lambda: {"submitted": 0, "skipped": 0, "leased": 0, "gold": 0, "seconds": []})
    rows = Assignment.objects.filter(project=project).values_list(
        "annotator__username", "status", "item__is_gold", "seconds_spent")
    for username, status, is_gold, seconds in rows:
        entry = per[username]
        if status == Assignment.Status.SUBMITTED:
            entry["gold" if is_gold else "submitted"] += 1
            if seconds is not None:
                entry["seconds"].append(seconds)
        elif status in (Assignment.Status.SKIPPED, Assignment.Status.LEASED):
            entry[status] += 1
    members = {m.user.username: m for m in ProjectMember.objects.filter(project=project).select_related("user")}
    annotators = []
    for username in sorted(set(per) | {n for n, m in members.items() if m.role != "manager"}):
        entry = per[username]
        secs = entry.pop("seconds")
        member = members.get(username)
        annotators.append({
            "annotator": username, **entry,
            "median_seconds": sorted(secs)[len(secs) // 2] if secs else None,
            "role": member.role if member else None, "excluded": bool(member and member.excluded),
        })
    return {
        "items": total, "overlap": project.overlap, "annotations_wanted": wanted,
        "annotations_done": done, "items_complete": totals["complete"] or 0,
        "items_started": totals["started"] or 0,
        "percent": round(100.0 * done / wanted, 1) if wanted else 0.0,
        "gold_items": Item.objects.filter(project=project, is_gold=True).count(),
        "annotators": annotators,
    }


# -- per-question units ------------------------------------------------------------------------


def _units(question: dict, subs) -> dict:
    """{unit key: {annotator: value}} for one question; unit keys are hashable, values are
    what agreement compares (canonical, independent of the order responses were shown in)."""
    name, kind = question["name"], question["kind"]
    units: dict = defaultdict(dict)
    for sub in subs:
        answer = sub.answers.get(name)
        if answer in (None, "", []):
            continue
        who = sub.annotator.username
        if kind == "rating":
            for cell in answer:
                aspect = cell.get("aspect", question["aspects"][0])
                units[(sub.item_id, cell["response"], aspect)][who] = cell["value"]
        elif kind == "binary":
            for cell in answer:
                units[(sub.item_id, cell["response"])][who] = cell["label"]
        elif kind == "pairwise":
            order = sub.response_order
            choice = answer["choice"]
            units[(sub.item_id,)][who] = "tie" if choice == "tie" else order[0 if choice == "a" else 1]
        elif kind == "ranking":
            if answer.get("all_bad"):
                units[(sub.item_id,)][who] = ("all_bad",)
            else:
                groups = [g if isinstance(g, list) else [g] for g in answer.get("ranking", [])]
                units[(sub.item_id,)][who] = tuple(tuple(sorted(g)) for g in groups)
    return units


def _unit_disagrees(kind: str, values: list) -> bool:
    if len(values) < 2:
        return False
    if kind == "rating":
        return max(values) - min(values) >= RATING_DISAGREEMENT
    return len({repr(v) for v in values}) > 1


def _ranking_tau(a, b) -> float | None:
    if a == ("all_bad",) or b == ("all_bad",):
        return 1.0 if a == b else 0.0
    return ag.kendall_tau(ag.ranks_from_groups(a), ag.ranks_from_groups(b))


def question_agreement(question: dict, subs, with_timeline: bool = False) -> dict:
    kind = question["kind"]
    units = _units(question, subs)
    multi = {k: v for k, v in units.items() if len(v) >= 2}
    out: dict = {"question": question["name"], "kind": kind, "units": len(units),
                 "units_with_overlap": len(multi)}
    if kind in ("edit", "comment"):
        return out
    value_lists = [list(v.values()) for v in multi.values()]
    per_annotator: dict = defaultdict(lambda: [0, 0])  # agreeing pairs, pairs
    pair_labels: dict = defaultdict(lambda: ([], []))
    for values in multi.values():
        for (a, va), (b, vb) in combinations(sorted(values.items()), 2):
            if kind == "ranking":
                tau = _ranking_tau(va, vb)
                same = tau is not None and tau >= 0.999
            elif kind == "rating":
                same = va == vb
            else:
                same = va == vb
            for who in (a, b):
                per_annotator[who][0] += same
                per_annotator[who][1] += 1
            pair_labels[(a, b)][0].append(repr(va))
            pair_labels[(a, b)][1].append(repr(vb))
    out["per_annotator"] = {who: round(agree / total, 3) for who, (agree, total) in sorted(per_annotator.items())}
    if kind == "ranking":
        taus = [t for values in multi.values()
                for va, vb in combinations(list(values.values()), 2)
                if (t := _ranking_tau(va, vb)) is not None]
        out["kendall_tau_mean"] = round(mean(taus), 4) if taus else None
        out["pairwise_agreement"] = ag.pairwise_agreement(value_lists)
        return out
    level = "interval" if kind == "rating" else "nominal"
    nominal_lists = [[repr(v) for v in values] for values in value_lists]
    out["krippendorff_alpha"] = _round(ag.krippendorff_alpha(value_lists if kind == "rating" else nominal_lists, level))
    out["alpha_level"] = level
    out["pairwise_agreement"] = _round(ag.pairwise_agreement(nominal_lists))
    sizes = {len(v) for v in nominal_lists}
    if len(sizes) == 1 and nominal_lists:
        out["fleiss_kappa"] = _round(ag.fleiss_kappa(ag.fleiss_table(nominal_lists)))
    else:  # Fleiss needs equal annotators per unit: use the most common size
        common = max(sizes, key=lambda s: sum(len(v) == s for v in nominal_lists)) if sizes else 0
        same = [v for v in nominal_lists if len(v) == common]
        out["fleiss_kappa"] = _round(ag.fleiss_kappa(ag.fleiss_table(same))) if same else None
    kappas = {f"{a}~{b}": _round(ag.cohen_kappa(x, y)) for (a, b), (x, y) in sorted(pair_labels.items())
              if len(x) >= 2}
    out["cohen_kappa"] = kappas
    known = [k for k in kappas.values() if k is not None]
    out["cohen_kappa_mean"] = _round(mean(known)) if known else None
    if kind == "rating":
        histogram = defaultdict(int)
        for values in units.values():
            for value in values.values():
                histogram[value] += 1
        out["histogram"] = {str(v): histogram.get(v, 0) for v in range(1, question["scale"] + 1)}
    if with_timeline:
        out["timeline"] = _alpha_timeline(question, subs, level)
    return out


def _alpha_timeline(question, subs, level: str, points: int = 12) -> list[dict]:
    """Alpha over the submissions so far, at up to `points` moments: is agreement improving
    as annotators learn the guidelines?"""
    subs = list(subs)
    if len(subs) < 4:
        return []
    out = []
    step = max(1, len(subs) // points)
    for end in list(range(step, len(subs), step))[: points - 1] + [len(subs)]:
        window = subs[:end]
        units = _units(question, window)
        lists = [list(v.values()) for v in units.values() if len(v) >= 2]
        if level == "nominal":
            lists = [[repr(x) for x in values] for values in lists]
        alpha = ag.krippendorff_alpha(lists, level) if lists else None
        out.append({"at": window[-1].submitted_at.isoformat(), "submissions": end, "alpha": _round(alpha)})
    return out


def _round(value):
    return None if value is None else round(value, 4)


def agreement_report(project: AnnotationProject, with_timeline: bool = False) -> dict:
    subs = list(submissions(project))
    return {"questions": [question_agreement(q, subs, with_timeline) for q in project.questions],
            "submissions": len(subs)}


def disagreements(project: AnnotationProject, include_reviewed: bool = True) -> list[dict]:
    """Items where annotators disagree, per question, with everyone's answers."""
    subs = list(submissions(project))
    by_item = defaultdict(list)
    for sub in subs:
        by_item[sub.item_id].append(sub)
    reviewed = {(r.item_id, r.question): r for r in Review.objects.filter(project=project).select_related("reviewer")}
    out = []
    for question in project.questions:
        if question["kind"] in ("edit", "comment"):
            continue
        units = _units(question, subs)
        flagged = sorted({key[0] for key, values in units.items()
                          if _unit_disagrees(question["kind"], list(values.values()))})
        for item_id in flagged:
            review = reviewed.get((item_id, question["name"]))
            if review is not None and not include_reviewed:
                continue
            out.append({
                "item": item_id, "question": question["name"], "kind": question["kind"],
                "answers": [{"annotator": s.annotator.username, "answer": s.answers.get(question["name"]),
                             "response_order": s.response_order} for s in by_item[item_id]],
                "final": None if review is None else {
                    "answer": review.answer, "reviewer": review.reviewer.username if review.reviewer else None},
            })
    return out


def _gold_correct(question: dict, given, gold, order) -> bool:
    kind = question["kind"]
    if kind == "rating":
        want = {(c["response"], c.get("aspect", question["aspects"][0])): c["value"] for c in gold}
        got = {(c["response"], c.get("aspect", question["aspects"][0])): c["value"] for c in given}
        return all(key in got and abs(got[key] - value) <= 1 for key, value in want.items())
    if kind == "binary":
        want = {c["response"]: c["label"] for c in gold}
        got = {c["response"]: c["label"] for c in given}
        return all(got.get(r) == label for r, label in want.items())
    if kind == "pairwise":
        def winner(answer, shown):
            return "tie" if answer["choice"] == "tie" else shown[0 if answer["choice"] == "a" else 1]
        # gold pairwise answers name a/b in the item's stored response order
        return winner(given, order) == winner(gold, gold.get("_order") or order)
    if kind == "ranking":
        if gold.get("all_bad") or given.get("all_bad"):
            return bool(gold.get("all_bad")) == bool(given.get("all_bad"))
        first = lambda groups: sorted(groups[0] if isinstance(groups[0], list) else [groups[0]])  # noqa: E731
        return bool(given.get("ranking")) and first(given["ranking"]) == first(gold["ranking"])
    return True


def gold_accuracy(project: AnnotationProject) -> list[dict]:
    per = defaultdict(lambda: [0, 0])
    for sub in submissions(project, gold=True):
        item = sub.item
        for name, gold in item.gold_answers.items():
            question = project.question(name)
            given = sub.answers.get(name)
            if question is None or given in (None, [], ""):
                continue
            if question["kind"] == "pairwise":
                gold = {**gold, "_order": list(item.response_ids)}
            per[sub.annotator.username][0] += _gold_correct(question, given, gold, sub.response_order)
            per[sub.annotator.username][1] += 1
    return [{"annotator": who, "gold_answers": total, "correct": correct,
             "accuracy": round(correct / total, 3) if total else None}
            for who, (correct, total) in sorted(per.items())]

"""Setting projects up and steering them: items from the dataset filter, members, gold
items, excluding an annotator's work, and reviewers' final answers."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Prefetch

from corpus.api import METADATA_KEY
from corpus.feedback import PayloadError
from corpus.models import CurationStatus, Feedback, Record, Response
from winnow.sqlrows import refresh_statistics

from .models import AnnotationProject, Assignment, Item, ProjectMember, Review
from .questions import check_answers, min_responses

FILTER_KEYS = {"status", "source", "metadata"}


def normalise_filter(value) -> dict:
    """{"status": "kept"|"dropped"|"any", "source": str, "metadata": {key: value}}; status
    defaults to kept, so curation's drops stay out of annotation."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise PayloadError("record_filter", "must be an object")
    unknown = sorted(set(value) - FILTER_KEYS)
    if unknown:
        raise PayloadError(f"record_filter.{unknown[0]}", "unknown filter; allowed: metadata, source, status")
    status = value.get("status", CurationStatus.KEPT)
    if status not in (*CurationStatus.values, "any"):
        raise PayloadError("record_filter.status", "must be kept, dropped or any")
    out = {"status": status}
    if value.get("source") not in (None, ""):
        if not isinstance(value["source"], str):
            raise PayloadError("record_filter.source", "must be a string")
        out["source"] = value["source"]
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise PayloadError("record_filter.metadata", "must be an object of key: value")
    for key, val in metadata.items():
        if not METADATA_KEY.match(key) or "__" in key:
            raise PayloadError(f"record_filter.metadata.{key}", "keys are 1-64 letters, digits, _ or -")
        if not isinstance(val, (str, int, float, bool)):
            raise PayloadError(f"record_filter.metadata.{key}", "must be a string, number or boolean")
    if metadata:
        out["metadata"] = metadata
    return out


def filtered_records(project: AnnotationProject):
    records = Record.objects.filter(dataset_id=project.dataset_id)
    flt = project.record_filter
    if flt.get("status", "kept") != "any":
        records = records.filter(status=flt.get("status", "kept"))
    if flt.get("source"):
        records = records.filter(source=flt["source"])
    for key, value in (flt.get("metadata") or {}).items():
        records = records.filter(**{f"metadata__{key}": value})
    return records


def build_items(project: AnnotationProject, batch: int = 2000) -> int:
    """One item per record in the filter that has enough (kept) responses for every
    question; records that already have an item are left alone. Returns items added."""
    need = min_responses(project.questions)
    # Pairwise compares one pair: every annotator must see the same two (in their own order).
    cap = 2 if any(q["kind"] == "pairwise" for q in project.questions) else project.max_responses
    existing = set(Item.objects.filter(project=project).values_list("record_id", flat=True))
    kept = Response.objects.filter(status=CurationStatus.KEPT, edited_from__isnull=True).order_by("id")
    added = 0
    pending: list[Item] = []
    records = filtered_records(project).order_by("id").prefetch_related(
        Prefetch("responses", queryset=kept, to_attr="kept_responses"))
    for record in records.iterator(chunk_size=batch):
        if record.pk in existing:
            continue
        ids = [r.pk for r in record.kept_responses]
        if cap:
            ids = ids[:cap]
        if len(ids) < need:
            continue
        pending.append(Item(project=project, record=record, response_ids=ids))
        if len(pending) >= batch:
            Item.objects.bulk_create(pending)
            added += len(pending)
            pending = []
    Item.objects.bulk_create(pending)
    added += len(pending)
    if added:
        # Every claim reads the queue index; plan it from the items just written.
        refresh_statistics(Item, Assignment)
    return added


def set_gold(project: AnnotationProject, item: Item, answers) -> Item:
    """Make an item gold, with its known answers (same format as a submission)."""
    if not isinstance(answers, dict) or not answers:
        raise PayloadError("answers", "give the known answer to at least one question")
    for q in project.questions:
        if q["kind"] in ("edit", "comment") and q["name"] in answers:
            raise PayloadError(f"answers.{q['name']}", "edit and comment questions have no gold answer")
    questions = [{**q, "required": False} for q in project.questions]
    check_answers(questions, answers, list(item.response_ids))
    item.is_gold, item.gold_answers = True, answers
    item.save(update_fields=["is_gold", "gold_answers"])
    return item


def add_member(project: AnnotationProject, user, role: str) -> ProjectMember:
    if role not in ProjectMember.Role.values:
        raise PayloadError("role", f"must be one of {', '.join(ProjectMember.Role.values)}")
    member, _ = ProjectMember.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return member


def exclude_annotator(project: AnnotationProject, member: ProjectMember, excluded: bool = True) -> int:
    """Exclude (or re-include) an annotator's work: their Feedback rows are marked
    `"excluded": true` for the dataset builders, their submissions stop counting against the
    overlap (so others re-collect those items), and the queue stops serving them."""
    with transaction.atomic():
        member.excluded = excluded
        member.save(update_fields=["excluded"])
        old, new = ((Assignment.Status.SUBMITTED, Assignment.Status.EXCLUDED) if excluded
                    else (Assignment.Status.EXCLUDED, Assignment.Status.SUBMITTED))
        work = list(Assignment.objects.select_for_update().filter(
            project=project, annotator=member.user, status=old))
        ids = [fid for a in work for fid in a.feedback_ids]
        rows = list(Feedback.objects.filter(pk__in=ids))
        for row in rows:
            row.provenance = {**row.provenance, "excluded": True} if excluded else {
                k: v for k, v in row.provenance.items() if k != "excluded"}
        Feedback.objects.bulk_update(rows, ["provenance"], batch_size=500)
        delta = -1 if excluded else 1
        for assignment in sorted(work, key=lambda a: a.item_id):
            Item.objects.filter(pk=assignment.item_id).update(
                claimed=F("claimed") + delta, submitted=F("submitted") + delta)
        Assignment.objects.filter(pk__in=[a.pk for a in work]).update(status=new)
        if excluded:  # their open leases go back to the pool
            leases = list(Assignment.objects.select_for_update().filter(
                project=project, annotator=member.user, status=Assignment.Status.LEASED))
            for lease in sorted(leases, key=lambda a: a.item_id):
                Item.objects.filter(pk=lease.item_id).update(claimed=F("claimed") - 1)
            Assignment.objects.filter(pk__in=[a.pk for a in leases]).delete()
    return len(rows)


def set_final_answer(project: AnnotationProject, item: Item, question: str, answer, reviewer) -> Review:
    """A reviewer's final answer to one question: written as Feedback with `"final": true`
    (replacing an earlier final answer), which the dataset builders prefer."""
    from .queue import write_answers

    q = project.question(question)
    if q is None:
        raise PayloadError("question", "is not a question of this project")
    if q["kind"] == "comment":
        raise PayloadError("question", "comments have no final answer")
    with transaction.atomic():
        previous = Review.objects.select_for_update().filter(item=item, question=question).first()
        project_one = AnnotationProject(pk=project.pk, questions=[{**q, "required": True}])
        feedback_ids, created, _ = write_answers(
            project_one, item, reviewer, {question: answer}, list(item.response_ids),
            role="reviewer", final=True,
        )
        if previous is not None:
            Feedback.objects.filter(pk__in=previous.feedback_ids).delete()
            previous.delete()
        return Review.objects.create(project=project, item=item, question=question, reviewer=reviewer,
                                     answer=answer, feedback_ids=feedback_ids)

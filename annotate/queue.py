"""The work queue: who judges which item next, leases, submissions, skips and undo.

Invariants (tests/annotate/test_queue_concurrency.py checks them under load):
- an item never has more than `overlap` submissions + live leases (`Item.claimed`);
- an annotator gets an item at most once (unique (item, annotator) assignment);
- an annotator never gets an item whose record has a response they wrote;
- a retried submit with the same client key writes nothing new.

How claims stay correct:
- PostgreSQL: the candidate item is locked with SELECT ... FOR UPDATE SKIP LOCKED and its
  `claimed` counter is bumped in the same transaction. Concurrent claimers skip the locked
  row; one that read the row before our commit re-checks `claimed < overlap` on the new row
  version (READ COMMITTED's re-check), so it never over-collects.
- SQLite: every transaction begins IMMEDIATE (settings), which takes the write lock at BEGIN,
  so claim transactions run one at a time and the plain SELECT + UPDATE is already exclusive.
"""

from __future__ import annotations

import difflib
import random
import time
from collections import Counter
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from corpus.feedback import PayloadError, validate_payload
from corpus.models import AuthorKind, Feedback, Response

from . import sql
from .models import AnnotationProject, Assignment, Comment, Item, ProjectMember, Review
from .questions import check_answers


class QueueError(Exception):
    """A request the queue refuses; `status` is the HTTP status to answer with."""

    def __init__(self, detail: str, status: int = 409, code: str = "conflict"):
        super().__init__(detail)
        self.detail, self.status, self.code = detail, status, code


def _lockable(queryset):
    # SQLite has no row locks (and needs none: writers are serialised at BEGIN IMMEDIATE).
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset


def _locked(queryset):
    if connection.features.has_select_for_update:
        return queryset.select_for_update(of=("self",))
    return queryset


# -- leases -----------------------------------------------------------------------------------


def sweep_expired_leases(project: AnnotationProject, now=None) -> int:
    """Give back leases past their deadline, so their slots count for others again.

    The leases are taken with SKIP LOCKED, so two sweepers never wait on each other, and
    each lease is given back exactly once."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            _lockable(Assignment.objects.filter(
                project=project, status=Assignment.Status.LEASED, expires_at__lte=now
            )).values_list("id", "item_id")[:1000]
        )
        if not expired:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, _ in expired]).delete()
        for item_id, count in sorted(Counter(item for _, item in expired).items()):
            Item.objects.filter(pk=item_id).update(claimed=F("claimed") - count)
    return len(expired)


def _shown_order(project: AnnotationProject, item: Item, user) -> list[int]:
    order = list(item.response_ids)
    if project.shuffle_responses:
        random.Random(f"{project.pk}:{item.pk}:{user.pk}:{random.random()}").shuffle(order)
    return order


def next_assignment(project: AnnotationProject, user, holding: tuple[int, ...] = ()) -> Assignment | None:
    """The annotator's next item: a live lease they already hold (other than the items in
    `holding`, which the client is showing or has prefetched), else a newly claimed one."""
    now = timezone.now()
    lease = timedelta(seconds=project.lease_seconds)
    mine_id = sql.live_lease_id(project.pk, user.pk, now, holding)
    mine = None
    if mine_id is not None:  # rare (a reload, an undo): the full row only then
        mine = Assignment.objects.select_related("item__record").filter(pk=mine_id).first()
    if mine is not None:
        Assignment.objects.filter(pk=mine.pk).update(expires_at=now + lease)
        mine.expires_at = now + lease
        return mine
    if _sweep_due(project.pk):
        sweep_expired_leases(project, now)
    gold_first = project.gold_rate > 0 and random.random() < project.gold_rate
    clashes = waits = 0
    swept = False
    while True:
        try:
            claimed = _claim(project, user, now, lease, gold_first)
        except IntegrityError:
            # The same annotator claimed this item in a parallel request: pick another.
            clashes += 1
            if clashes > 3:
                raise
            continue
        if claimed is not None:
            return claimed
        if not swept:
            swept = True
            if sweep_expired_leases(project, now):
                continue  # expired leases freed some slots: try again
        # SKIP LOCKED passes over items another transaction holds for a moment (a claim, a
        # submit or a release of the same item): "nothing left" is the answer only when a
        # plain read agrees; else those transactions are waited for and the claim tried again.
        # (Without this an annotator was told "done" while an item still lacked a judgement.)
        if waits < LOCKED_ITEM_WAITS and _skipped_held_items(project, user):
            waits += 1
            time.sleep(0.005 * waits)
            continue
        return None


LOCKED_ITEM_WAITS = 20  # at most ~1 s of waiting in all


def _skipped_held_items(project, user) -> bool:
    if not connection.features.has_select_for_update_skip_locked:
        return False  # SQLite serialises writers: nothing is ever skipped there
    return any(sql.candidate_exists(project, user.pk, gold) for gold in (False, True))


_last_sweep: dict[int, float] = {}
SWEEP_EVERY_SECONDS = 5.0


def _sweep_due(project_id: int) -> bool:
    """Expired leases are given back every few seconds per process (and whenever the queue
    looks empty), not on every claim: the sweep is a write that every claim would pay for."""
    now = time.monotonic()
    if now - _last_sweep.get(project_id, 0.0) < SWEEP_EVERY_SECONDS:
        return False
    _last_sweep[project_id] = now
    return True


def _claim(project, user, now, lease, gold_first: bool) -> Assignment | None:
    # The candidate is read and locked, leased and counted in one transaction; see
    # annotate.sql.claim_candidate for the statement (records this annotator wrote a response
    # for are never theirs to judge; breadth-first order).
    with transaction.atomic():
        for gold in ((True, False) if gold_first else (False, True)):
            item = sql.claim_candidate(project, user.pk, gold)
            if item is None:
                continue
            assignment = Assignment(
                project=project, item=item, annotator=user, leased_at=now, expires_at=now + lease,
                response_order=_shown_order(project, item, user),
            )
            sql.insert(assignment, bump=("claimed", item.pk, 1))  # the lease counts at once
            return assignment
    return None


def _member(project, user) -> ProjectMember:
    return check_member(ProjectMember.objects.filter(project=project, user=user).first())


def check_member(member: ProjectMember | None) -> ProjectMember:
    if member is None:
        raise QueueError("You are not a member of this project.", 403, "permission_denied")
    if member.excluded:
        raise QueueError("A manager excluded your work from this project.", 403, "permission_denied")
    return member


def _my_assignment(project, user, item_id) -> Assignment | None:
    """The caller's assignment on the item, with its item, locked until the transaction ends."""
    return sql.assignment_of(project.pk, user.pk, item_id, lock=True)


def release(project: AnnotationProject, user, item_id: int) -> None:
    """Give a lease back without judging; the item can come back to anyone, this annotator
    included."""
    with transaction.atomic():
        assignment = _my_assignment(project, user, item_id)
        if assignment is None or assignment.status != Assignment.Status.LEASED:
            raise QueueError("You hold no lease on this item.", 404, "not_found")
        assignment.delete()
        Item.objects.filter(pk=item_id).update(claimed=F("claimed") - 1)


def skip(project: AnnotationProject, user, item_id: int) -> None:
    """Pass on an item for good: it goes to someone else, never back to this annotator."""
    with transaction.atomic():
        assignment = _my_assignment(project, user, item_id)
        if assignment is None or assignment.status != Assignment.Status.LEASED:
            raise QueueError("You hold no lease on this item.", 404, "not_found")
        Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SKIPPED)
        Item.objects.filter(pk=item_id).update(claimed=F("claimed") - 1)


# -- submissions -------------------------------------------------------------------------------


def _provenance(project, item, question, order, role="annotator", final=False) -> dict:
    out = {"annotation_project": project.pk, "question": question, "item": item.pk,
           "gold": item.is_gold, "role": role, "response_order": order}
    if final:
        out["final"] = True
    return out


def _word_diff(before: str, after: str) -> str:
    return "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile="original", tofile="edited",
    ))


def write_answers(project, item, user, answers, order, role="annotator", final=False):
    """Validate every answer, then write its Feedback rows, rewrites and comments.

    Returns (feedback ids, created response ids, comments to attach). Raises PayloadError
    before anything is written."""
    checked = check_answers(project.questions, answers, order)
    now = timezone.now()
    feedback, created = [], []
    comments = []
    for name, written in checked.items():
        prov = _provenance(project, item, name, order, role, final)
        for kind, payload in written.feedback:
            feedback.append(Feedback(record_id=item.record_id, kind=kind, payload=payload,
                                     author_kind=AuthorKind.HUMAN, author=user, provenance=prov))
        if written.edit is not None:
            original_id, text = written.edit
            original = Response.objects.get(pk=original_id)
            if text == original.text:
                continue  # nothing rewritten: no new response, no edit feedback
            rewrite = Response.objects.create(
                record_id=item.record_id, text=text, author_kind=AuthorKind.HUMAN, author=user,
                edited_from=original, provenance={**prov, "diff": _word_diff(original.text, text)},
            )
            created.append(rewrite.pk)
            payload = validate_payload("edit", {"response": original_id, "edited": rewrite.pk},
                                       {original_id, rewrite.pk})
            feedback.append(Feedback(record_id=item.record_id, kind="edit", payload=payload,
                                     author_kind=AuthorKind.HUMAN, author=user, provenance=prov))
        if written.comment is not None:
            comments.append(Comment(project=project, item=item, question=name, author=user,
                                    text=written.comment))
    for row in feedback:
        row.created_at = row.updated_at = now
    for row in feedback:  # one statement a row: a few per submission
        sql.insert(row)
    return [row.pk for row in feedback], created, comments


def submit(project: AnnotationProject, user, item_id: int, answers, client_key: str | None = None,
           seconds_spent: float | None = None, member: ProjectMember | None = None) -> tuple[Assignment, bool]:
    """Record an annotator's answers. Returns (assignment, created); a retry with the same
    client key returns the first submission and `created` False. `member`: the caller's
    membership when already checked (the API checks it in its permission)."""
    check_member(member) if member is not None else _member(project, user)
    if client_key is not None and (not isinstance(client_key, str) or not 1 <= len(client_key) <= 100):
        raise PayloadError("client_key", "must be a string of 1-100 characters")
    try:
        return _submit(project, user, item_id, answers, client_key, seconds_spent)
    except IntegrityError:
        # The unique (project, annotator, client_key): a key reused for another item.
        if client_key and Assignment.objects.filter(project=project, annotator=user, client_key=client_key).exists():
            raise PayloadError("client_key", "was already used for another item") from None
        raise


def _submit(project, user, item_id, answers, client_key, seconds_spent) -> tuple[Assignment, bool]:
    with transaction.atomic():
        assignment = _my_assignment(project, user, item_id)
        if assignment is None:
            assignment = _late_claim(project, user, item_id)
        elif assignment.status == Assignment.Status.SUBMITTED:
            if client_key and assignment.client_key == client_key:
                return assignment, False
            raise QueueError("You already submitted this item; undo it to change your answers.")
        elif assignment.status != Assignment.Status.LEASED:
            raise QueueError(f"This item is {assignment.status} for you.")
        item = assignment.item
        feedback_ids, created, comments = write_answers(
            project, item, user, answers, assignment.response_order
        )
        assignment.status = Assignment.Status.SUBMITTED
        assignment.submitted_at = timezone.now()
        assignment.client_key = client_key or None
        assignment.answers = answers
        assignment.feedback_ids = feedback_ids
        assignment.created_response_ids = created
        assignment.seconds_spent = seconds_spent
        sql.update_fields(assignment, ["status", "submitted_at", "client_key", "answers",
                                       "feedback_ids", "created_response_ids", "seconds_spent"],
                          bump=("submitted", item.pk, 1))
        if comments:
            for comment in comments:
                comment.assignment = assignment
            Comment.objects.bulk_create(comments)
    return assignment, True


def _late_claim(project, user, item_id) -> Assignment:
    """A submit whose lease expired (and was swept) still counts if the item has room."""
    item = _locked(Item.objects.filter(project=project, pk=item_id)).select_related("record").first()
    if item is None:
        raise QueueError("No such item in this project.", 404, "not_found")
    if not item.is_gold and item.claimed >= project.overlap:
        raise QueueError("Your lease expired and the item went to someone else.", 409, "lease_expired")
    if Response.objects.filter(record_id=item.record_id, author=user).exists():
        raise QueueError("You cannot judge a record you wrote a response for.", 403, "permission_denied")
    now = timezone.now()
    assignment = Assignment.objects.create(
        project=project, item=item, annotator=user, leased_at=now, expires_at=now,
        response_order=_shown_order(project, item, user),
    )
    Item.objects.filter(pk=item.pk).update(claimed=F("claimed") + 1)
    assignment.item = item
    return assignment


def undo_last(project: AnnotationProject, user) -> Assignment:
    """Take back the annotator's latest submission: its Feedback, rewrites and comments are
    deleted and the item is leased to them again, answers kept for the page to pre-fill."""
    _member(project, user)
    with transaction.atomic():
        assignment = _locked(Assignment.objects.filter(
            project=project, annotator=user, status=Assignment.Status.SUBMITTED
        )).select_related("item__record").order_by("-submitted_at", "-id").first()
        if assignment is None:
            raise QueueError("Nothing to undo.", 404, "not_found")
        if Review.objects.filter(item_id=assignment.item_id).exists():
            raise QueueError("A reviewer already settled this item; it cannot be undone.")
        Feedback.objects.filter(pk__in=assignment.feedback_ids).delete()
        Response.objects.filter(pk__in=assignment.created_response_ids).delete()
        Comment.objects.filter(assignment=assignment).delete()
        now = timezone.now()
        assignment.status = Assignment.Status.LEASED
        assignment.expires_at = now + timedelta(seconds=project.lease_seconds)
        assignment.submitted_at = None
        assignment.client_key = None
        assignment.feedback_ids = []
        assignment.created_response_ids = []
        assignment.save(update_fields=["status", "expires_at", "submitted_at", "client_key",
                                       "feedback_ids", "created_response_ids"])
        Item.objects.filter(pk=assignment.item_id).update(submitted=F("submitted") - 1)
    return assignment

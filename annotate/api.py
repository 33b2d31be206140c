"""REST API for annotation projects: set-up for managers, the queue for annotators, agreement
and review for reviewers. Behaviour lives in annotate.queue / setup / stats."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response as APIResponse

from corpus.feedback import PayloadError
from corpus.models import Dataset
from winnow.api import MAX_DB_ID, username_field
from winnow.roles import is_manager, role_of
from winnow.throttles import SubmitThrottle

from . import queue, setup, sql, stats
from .models import AnnotationProject, Assignment, Item, ProjectMember
from .questions import normalise_questions
from .render import markdown_html, word_diff_html

WORK = "work"          # next, submit, skip, release, undo: any member not excluded
READ = "read"          # retrieve, progress: any member
REVIEW = "review"      # agreement, review: reviewers and managers
MANAGE = "manage"      # update, delete, members, gold, exclude, items: project managers

ACTION_LEVELS = {
    "retrieve": READ, "progress": READ,
    "next": WORK, "submit": WORK, "skip": WORK, "release": WORK, "undo": WORK,
    "agreement": REVIEW, "review": REVIEW, "item": REVIEW,
    "update": MANAGE, "partial_update": MANAGE, "destroy": MANAGE, "members": MANAGE,
    "member": MANAGE, "exclude": MANAGE, "gold": MANAGE,
}


def project_role(project: AnnotationProject, user) -> str | None:
    """The user's role in the project ("manager" for global managers and admins)."""
    if is_manager(user):
        return ProjectMember.Role.MANAGER
    member = ProjectMember.objects.filter(project=project, user=user).only("role").first()
    return member.role if member else None


class ProjectPermission(BasePermission):
    message = "Your role in this project does not allow this."

    def has_permission(self, request, view) -> bool:
        if role_of(request.user) is None:
            return False
        if view.action == "create":
            return is_manager(request.user)
        return True  # object-level below; the queryset hides other people's projects

    def has_object_permission(self, request, view, project) -> bool:
        level = ACTION_LEVELS.get(view.action, MANAGE)
        if level == WORK:
            role = None
        else:
            role = project_role(project, request.user)
        if level == READ:
            return role is not None
        if level == WORK:
            # Kept on the request: the queue needs the membership (excluded?) too. get_object's
            # fast path has already read it together with the project.
            member = getattr(request, "annotation_member", None)
            if member is None or member.project_id != project.pk:
                member = ProjectMember.objects.filter(project=project, user=request.user).first()
            request.annotation_member = member
            return member is not None
        if level == REVIEW:
            return role in (ProjectMember.Role.MANAGER, ProjectMember.Role.REVIEWER)
        return role == ProjectMember.Role.MANAGER


def bad_request(exc: PayloadError):
    return exceptions.ValidationError({exc.field: exc.reason})


class ProjectSerializer(serializers.ModelSerializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    questions = serializers.JSONField()
    record_filter = serializers.JSONField(required=False)
    created_by = username_field()
    item_count = serializers.SerializerMethodField()
    my_role = serializers.SerializerMethodField()
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    overlap = serializers.IntegerField(min_value=1, max_value=50, required=False)
    lease_seconds = serializers.IntegerField(min_value=30, max_value=7 * 24 * 3600, required=False)

    class Meta:
        model = AnnotationProject
        fields = [
            "id", "name", "description", "dataset", "record_filter", "questions", "guidelines",
            "overlap", "lease_seconds", "gold_rate", "shuffle_responses", "max_responses",
            "item_count", "my_role", "created_by", "created_at", "updated_at",
        ]

    def get_item_count(self, project) -> int:
        counted = getattr(project, "item_count", None)
        return counted if counted is not None else project.items.count()

    def get_my_role(self, project) -> str | None:
        request = self.context.get("request")
        return project_role(project, request.user) if request else None

    def validate_questions(self, value):
        try:
            questions = normalise_questions(value)
        except PayloadError as exc:
            raise serializers.ValidationError(f"{exc.field}: {exc.reason}") from None
        if self.instance is not None and questions != self.instance.questions and Assignment.objects.filter(
                project=self.instance, status=Assignment.Status.SUBMITTED).exists():
            raise serializers.ValidationError("questions cannot change once answers are in; start a new project")
        return questions

    def validate_record_filter(self, value):
        try:
            return setup.normalise_filter(value)
        except PayloadError as exc:
            raise serializers.ValidationError(f"{exc.field}: {exc.reason}") from None

    def validate(self, attrs):
        if self.instance is not None and "dataset" in attrs and attrs["dataset"] != self.instance.dataset:
            raise serializers.ValidationError({"dataset": "a project's dataset cannot change"})
        return attrs

    @transaction.atomic
    def create(self, validated):
        validated.setdefault("record_filter", setup.normalise_filter({}))
        user = self.context["request"].user
        project = AnnotationProject.objects.create(created_by=user, **validated)
        ProjectMember.objects.create(project=project, user=user, role=ProjectMember.Role.MANAGER)
        setup.build_items(project)
        return project

    @transaction.atomic
    def update(self, instance, validated):
        refilter = "record_filter" in validated and validated["record_filter"] != instance.record_filter
        project = super().update(instance, validated)
        if refilter or "questions" in validated:
            setup.build_items(project)  # adds items for newly matching records
        return project


class SubmitSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    answers = serializers.JSONField()
    client_key = serializers.CharField(max_length=100, required=False, allow_null=True)
    seconds_spent = serializers.FloatField(min_value=0, required=False, allow_null=True)


class ItemRefSerializer(serializers.Serializer):
    item = serializers.IntegerField()


class NextSerializer(serializers.Serializer):
    holding = serializers.ListField(child=serializers.IntegerField(), required=False, default=list,
                                    max_length=20)
    render = serializers.BooleanField(required=False, default=False)


class ReviewSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    question = serializers.CharField(max_length=100)
    answer = serializers.JSONField()


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=ProjectMember.Role.choices, default=ProjectMember.Role.ANNOTATOR)


class GoldSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    answers = serializers.JSONField()


class ExcludeSerializer(serializers.Serializer):
    excluded = serializers.BooleanField(default=True)


def item_payload(project: AnnotationProject, item: Item, order: list[int], *, render: bool,
                 assignment: Assignment | None = None) -> dict:
    """What the workbench shows: the record and its responses in this annotator's order."""
    record = item.record
    texts = sql.response_texts(order)
    responses = [{"id": pk, "text": texts.get(pk, "")} for pk in order]
    out = {
        "item": item.pk, "record": {
            "id": record.pk, "kind": record.kind, "prompt": record.prompt, "context": record.context,
            "history": record.history, "metadata": record.metadata,
        },
        "responses": responses,
    }
    if assignment is not None:
        out["lease_expires_at"] = assignment.expires_at
        if assignment.answers and assignment.status == Assignment.Status.LEASED:
            out["previous_answers"] = assignment.answers  # after an undo: pre-fill the form
    if render:
        out["record"]["prompt_html"] = markdown_html(record.prompt)
        out["record"]["context_html"] = markdown_html(record.context) if record.context else ""
        out["record"]["history_html"] = [
            {"role": m.get("role"), "html": markdown_html(str(m.get("content", "")))} for m in record.history
        ]
        for response in responses:
            response["html"] = markdown_html(response["text"])
        if len(responses) >= 2:
            left, right, ratio = word_diff_html(responses[0]["text"], responses[1]["text"])
            responses[0]["diff_html"], responses[1]["diff_html"] = left, right
            responses[0]["diff_ratio"] = responses[1]["diff_ratio"] = ratio
    return out


class AnnotationProjectViewSet(viewsets.ModelViewSet):
    """Annotation projects. Managers create and steer them; members see the ones they belong
    to and work through the queue (`next`, `submit`, `skip`, `release`, `undo`)."""

    serializer_class = ProjectSerializer
    permission_classes = [ProjectPermission]

    def get_queryset(self):
        projects = AnnotationProject.objects.select_related("created_by", "dataset")
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return projects.none()
        if not is_manager(self.request.user):
            projects = projects.filter(memberships__user=self.request.user)
        return projects.order_by("-id")

    def get_object(self):
        """The queue actions (next, submit, ...) read the caller's membership and the project in
        one query: a member may work in the project whatever their global role (managers see
        every project, annotators the ones they belong to), so the membership settles both
        visibility and permission. Anyone else takes the ordinary path, which answers 404 or 403
        as before."""
        if ACTION_LEVELS.get(self.action) == WORK:
            pk = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
            if isinstance(pk, str) and pk.isascii() and pk.isdigit() and int(pk) <= MAX_DB_ID:
                member = sql.member_with_project(int(pk), self.request.user.pk)
                if member is not None:
                    self.request.annotation_member = member
                    project = member.project
                    self.check_object_permissions(self.request, project)
                    return project
        return super().get_object()

    def _run(self, call):
        try:
            return call()
        except PayloadError as exc:
            raise bad_request(exc) from None
        except queue.QueueError as exc:
            return APIResponse({"detail": exc.detail, "code": exc.code, "errors": []}, status=exc.status)

    def _body(self, serializer_class):
        form = serializer_class(data=self.request.data)
        form.is_valid(raise_exception=True)
        return form.validated_data

    @extend_schema(request=NextSerializer, responses={200: dict, 204: None},
                   summary="Claim the next item (a lease); 204 when there is nothing left for you")
    @action(detail=True, methods=["post"])
    def next(self, request, pk=None):
        project = self.get_object()
        body = self._body(NextSerializer)

        def claim():
            queue.check_member(request.annotation_member)
            assignment = queue.next_assignment(project, request.user, tuple(body["holding"]))
            if assignment is None:
                return APIResponse(status=status.HTTP_204_NO_CONTENT)
            return APIResponse(item_payload(project, assignment.item, assignment.response_order,
                                            render=body["render"], assignment=assignment))

        return self._run(claim)

    @extend_schema(request=SubmitSerializer, responses={201: dict, 200: dict})
    @action(detail=True, methods=["post"], throttle_classes=[SubmitThrottle])
    def submit(self, request, pk=None):
        project = self.get_object()
        body = self._body(SubmitSerializer)

        def run():
            assignment, created = queue.submit(
                project, request.user, body["item"], body["answers"], body.get("client_key"),
                body.get("seconds_spent"), member=request.annotation_member)
            return APIResponse(
                {"item": assignment.item_id, "submitted_at": assignment.submitted_at,
                 "feedback": assignment.feedback_ids, "created_responses": assignment.created_response_ids,
                 "replayed": not created},
                status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

        return self._run(run)

    @extend_schema(request=ItemRefSerializer, responses={204: None})
    @action(detail=True, methods=["post"], throttle_classes=[SubmitThrottle])
    def skip(self, request, pk=None):
        project = self.get_object()
        body = self._body(ItemRefSerializer)
        return self._run(lambda: (queue.check_member(request.annotation_member),
                                  queue.skip(project, request.user, body["item"]),
                                  APIResponse(status=status.HTTP_204_NO_CONTENT))[-1])

    @extend_schema(request=ItemRefSerializer, responses={204: None})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        project = self.get_object()
        body = self._body(ItemRefSerializer)
        return self._run(lambda: (queue.release(project, request.user, body["item"]),
                                  APIResponse(status=status.HTTP_204_NO_CONTENT))[-1])

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        project = self.get_object()
        render = request.query_params.get("render") in ("1", "true")

        def run():
            assignment = queue.undo_last(project, request.user)
            return APIResponse(item_payload(project, assignment.item, assignment.response_order,
                                            render=render, assignment=assignment))

        return self._run(run)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        project = self.get_object()
        report = stats.progress(project)
        report["mine"] = Assignment.objects.filter(
            project=project, annotator=request.user, status=Assignment.Status.SUBMITTED).count()
        if project_role(project, request.user) not in ("manager", "reviewer"):
            report["annotators"] = [a for a in report["annotators"] if a["annotator"] == request.user.username]
        return APIResponse(report)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def agreement(self, request, pk=None):
        project = self.get_object()
        timeline = request.query_params.get("timeline") in ("1", "true")
        return APIResponse(stats.agreement_report(project, with_timeline=timeline))

    @extend_schema(request=ReviewSerializer, responses={200: dict, 201: dict})
    @action(detail=True, methods=["get", "post"])
    def review(self, request, pk=None):
        """GET: items whose annotators disagree (?pending=1: not yet settled). POST: set the
        final answer to one question of one item."""
        project = self.get_object()
        if request.method == "GET":
            pending = request.query_params.get("pending") in ("1", "true")
            return APIResponse({"results": stats.disagreements(project, include_reviewed=not pending)})
        body = self._body(ReviewSerializer)
        item = get_object_or_404(Item, project=project, pk=body["item"])
        try:
            review = setup.set_final_answer(project, item, body["question"], body["answer"], request.user)
        except PayloadError as exc:
            raise bad_request(exc) from None
        return APIResponse({"item": item.pk, "question": review.question, "answer": review.answer,
                            "feedback": review.feedback_ids}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"], url_path=r"items/(?P<item_id>[0-9]+)")
    def item(self, request, pk=None, item_id=None):
        """One item with its record and responses (stored order), for reviewers."""
        project = self.get_object()
        item = get_object_or_404(Item.objects.select_related("record"), project=project, pk=item_id)
        out = item_payload(project, item, list(item.response_ids),
                           render=request.query_params.get("render") in ("1", "true"))
        out["is_gold"], out["gold_answers"] = item.is_gold, item.gold_answers
        out["submitted"] = item.submitted
        return APIResponse(out)

    @extend_schema(request=MemberSerializer, responses={200: dict, 201: dict})
    @action(detail=True, methods=["get", "post"])
    def members(self, request, pk=None):
        project = self.get_object()
        if request.method == "POST":
            body = self._body(MemberSerializer)
            user = get_user_model().objects.filter(username=body["username"], is_active=True).first()
            if user is None:
                raise exceptions.ValidationError({"username": "no active user has this name"})
            setup.add_member(project, user, body["role"])
        rows = ProjectMember.objects.filter(project=project).select_related("user")
        data = [{"user": m.user_id, "username": m.user.username, "role": m.role, "excluded": m.excluded}
                for m in rows]
        return APIResponse({"results": data},
                           status=status.HTTP_201_CREATED if request.method == "POST" else 200)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<user_id>[0-9]+)")
    def member(self, request, pk=None, user_id=None):
        project = self.get_object()
        member = get_object_or_404(ProjectMember, project=project, user_id=user_id)
        if Assignment.objects.filter(project=project, annotator_id=user_id).exclude(
                status=Assignment.Status.LEASED).exists():
            raise exceptions.ValidationError(
                {"user": "this member has submitted work; exclude it instead of removing them"})
        with transaction.atomic():
            leases = list(Assignment.objects.select_for_update().filter(project=project, annotator_id=user_id))
            for lease in sorted(leases, key=lambda a: a.item_id):
                Item.objects.filter(pk=lease.item_id).update(claimed=F("claimed") - 1)
            Assignment.objects.filter(pk__in=[a.pk for a in leases]).delete()
            member.delete()
        return APIResponse(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=ExcludeSerializer, responses={200: dict})
    @action(detail=True, methods=["post"], url_path=r"members/(?P<user_id>[0-9]+)/exclude")
    def exclude(self, request, pk=None, user_id=None):
        project = self.get_object()
        member = get_object_or_404(ProjectMember, project=project, user_id=user_id)
        body = self._body(ExcludeSerializer)
        changed = setup.exclude_annotator(project, member, body["excluded"])
        return APIResponse({"user": member.user_id, "excluded": member.excluded, "feedback_marked": changed})

    @extend_schema(request=GoldSerializer, responses={200: dict})
    @action(detail=True, methods=["get", "post"])
    def gold(self, request, pk=None):
        """GET: accuracy per annotator on gold items. POST: make an item gold with its answers."""
        project = self.get_object()
        if request.method == "POST":
            body = self._body(GoldSerializer)
            item = get_object_or_404(Item, project=project, pk=body["item"])
            if item.submitted and not item.is_gold:
                raise exceptions.ValidationError({"item": "already has annotations; pick a fresh item"})
            try:
                setup.set_gold(project, item, body["answers"])
            except PayloadError as exc:
                raise bad_request(exc) from None
        return APIResponse({"gold_items": Item.objects.filter(project=project, is_gold=True).count(),
                            "accuracy": stats.gold_accuracy(project)})


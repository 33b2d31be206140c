"""Which datasets a user may see.

Managers and admins see every dataset. Annotators see only datasets they are assigned to;
assignments belong to the apps that make them (annotation projects), which register a scope
here from their AppConfig.ready() so the corpus never imports them:

    register_dataset_scope(lambda user: Q(annotation_projects__members=user))
"""

from collections.abc import Callable

from django.db.models import Q, QuerySet

from winnow.roles import ANNOTATOR, is_manager, role_of

from .models import Dataset, Feedback, Record, Response

_SCOPES: list[Callable[[object], Q]] = []


def register_dataset_scope(scope: Callable[[object], Q]) -> None:
    if scope not in _SCOPES:
        _SCOPES.append(scope)


def visible_datasets(user) -> QuerySet[Dataset]:
    if is_manager(user):
        return Dataset.objects.all()
    if role_of(user) == ANNOTATOR and _SCOPES:
        condition = Q()
        for scope in _SCOPES:
            condition |= scope(user)
        return Dataset.objects.filter(condition).distinct()
    return Dataset.objects.none()


def visible_records(user) -> QuerySet[Record]:
    if is_manager(user):
        return Record.objects.all()
    return Record.objects.filter(dataset__in=visible_datasets(user).values("pk"))


def visible_responses(user) -> QuerySet[Response]:
    if is_manager(user):
        return Response.objects.all()
    return Response.objects.filter(record__dataset__in=visible_datasets(user).values("pk"))


def visible_feedback(user) -> QuerySet[Feedback]:
    """Annotators see only their own judgements: other people's answers would anchor theirs,
    and a reviewer's or gold answer (provenance "gold", "final") would give the key away."""
    if is_manager(user):
        return Feedback.objects.all()
    return Feedback.objects.filter(record__dataset__in=visible_datasets(user).values("pk"),
                                   author_id=getattr(user, "pk", None))

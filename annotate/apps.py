from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    name = "annotate"

    def ready(self) -> None:
        from corpus.access import register_dataset_scope

        register_dataset_scope(_member_datasets)


def _member_datasets(user):
    """Annotators may read the datasets of the projects they are members of."""
    from django.db.models import Q

    return Q(annotation_projects__memberships__user=user)

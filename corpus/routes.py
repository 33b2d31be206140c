"""The corpus's routes beyond the originals in winnow/urls.py: snapshots."""

from django.urls import path

from .snapshot_api import SnapshotFileView, SnapshotViewSet


def register(router) -> None:
    router.register("snapshots", SnapshotViewSet, basename="snapshot")


# Plain (non-router) paths, relative to /api/v1/.
urlpatterns: list = [
    path("snapshots/<int:pk>/files/<str:name>", SnapshotFileView.as_view(), name="snapshot-file"),
]

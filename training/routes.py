"""This app's REST routes, mounted under /api/v1/ by winnow/urls.py."""

from .api import RegisteredModelViewSet, TrainingRunViewSet


def register(router) -> None:
    """Register this app's viewsets on the shared API router."""
    router.register("models", RegisteredModelViewSet, basename="registered-model")
    router.register("training-runs", TrainingRunViewSet, basename="training-run")


# Plain (non-router) paths, relative to /api/v1/.
urlpatterns: list = []

"""This app's REST routes, mounted under /api/v1/ by winnow/urls.py."""

from .api import AnnotationProjectViewSet


def register(router) -> None:
    """Register this app's viewsets on the shared API router."""
    router.register("annotation-projects", AnnotationProjectViewSet, basename="annotation-project")


# Plain (non-router) paths, relative to /api/v1/.
urlpatterns: list = []

"""This app's REST routes, mounted under /api/v1/ by winnow/urls.py."""

from .api import CurationRunViewSet, PIIFindingViewSet


def register(router) -> None:
    """Register this app's viewsets on the shared API router."""
    router.register("curation-runs", CurationRunViewSet, basename="curation-run")
    router.register("pii-findings", PIIFindingViewSet, basename="pii-finding")


# Plain (non-router) paths, relative to /api/v1/.
urlpatterns: list = []

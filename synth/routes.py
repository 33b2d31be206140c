"""This app's REST routes, mounted under /api/v1/ by winnow/urls.py."""

from django.urls import path

from .api import GenerationJobViewSet, GenerationMethodList, ProviderViewSet


def register(router) -> None:
    """Register this app's viewsets on the shared API router."""
    router.register("providers", ProviderViewSet, basename="provider")
    router.register("generation-jobs", GenerationJobViewSet, basename="generation-job")


# Plain (non-router) paths, relative to /api/v1/.
urlpatterns: list = [
    path("generation-methods", GenerationMethodList.as_view(), name="generation-methods"),
]

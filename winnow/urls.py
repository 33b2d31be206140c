from importlib import import_module

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from corpus.api import (
    DatasetRecordList,
    DatasetViewSet,
    FeedbackViewSet,
    RecordViewSet,
    ResponseViewSet,
)
from jobs.api import JobViewSet

from .api import json_not_found

router = DefaultRouter(trailing_slash=False)
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("records", RecordViewSet, basename="record")
router.register("responses", ResponseViewSet, basename="response")
router.register("feedback", FeedbackViewSet, basename="feedback")
router.register("jobs", JobViewSet, basename="job")

api_v1 = [
    path("datasets/<int:dataset_id>/records", DatasetRecordList.as_view(), name="dataset-records"),
]
# Each app owns its routes (APP/routes.py), so adding an app's endpoints never edits this file.
for app in ("corpus", "synth", "curate", "annotate", "training"):
    routes = import_module(f"{app}.routes")
    routes.register(router)
    api_v1 += routes.urlpatterns
api_v1 += router.urls

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", json_not_found),
    path("api/<path:rest>", json_not_found),
    path("", include("frontend.urls")),
]

handler500 = "winnow.api.json_server_error"

"""REST views for snapshots: build from a recipe (202 + a job), list, detail, file download.

Snapshots are immutable: there is no PUT or PATCH. Files stream in blocks and honour a
single HTTP Range (206, or 416 when it lies outside the file), so a multi-GB train.jsonl
can be downloaded, resumed and sampled without loading it.
"""

from __future__ import annotations

import re

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response as APIResponse
from rest_framework.views import APIView

from jobs.api import JobSerializer
from winnow.api import username_field
from winnow.roles import IsManager

from .models import Snapshot
from .snapshots.job import start_snapshot_build
from .snapshots.recipe import RecipeError

BLOCK = 256 * 1024
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
}


class SnapshotSerializer(serializers.ModelSerializer):
    created_by = username_field()
    progress = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = ["id", "name", "kind", "status", "counts", "content_hash", "error", "job",
                  "progress", "created_by", "created_at", "finished_at"]
        read_only_fields = fields

    @staticmethod
    def _stopped(snapshot) -> bool:
        """A job cancelled before it started never ran the build: the snapshot is dead."""
        job = snapshot.job
        return (snapshot.status == Snapshot.Status.BUILDING and job is not None
                and job.is_finished)

    def get_status(self, snapshot) -> str:
        return Snapshot.Status.FAILED if self._stopped(snapshot) else snapshot.status

    def get_error(self, snapshot) -> str:
        if self._stopped(snapshot):
            return snapshot.job.error or f"the build job was {snapshot.job.status}"
        return snapshot.error

    def get_progress(self, snapshot) -> dict | None:
        job = snapshot.job
        if job is None:
            return None
        return {"done": job.progress_done, "total": job.progress_total,
                "fraction": job.progress_fraction, "stage": job.progress_stage,
                "job_status": job.status}


class SnapshotDetailSerializer(SnapshotSerializer):
    card = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta(SnapshotSerializer.Meta):
        fields = [*SnapshotSerializer.Meta.fields, "recipe", "stats", "card", "files"]
        read_only_fields = fields

    def get_card(self, snapshot) -> str:
        path = snapshot.directory / "card.md"
        return path.read_text() if snapshot.status == Snapshot.Status.READY and path.is_file() else ""

    def get_files(self, snapshot) -> list[dict]:
        if snapshot.status != Snapshot.Status.READY:
            return []
        out = []
        for name in Snapshot.FILES:
            path = snapshot.directory / name
            if path.is_file():
                out.append({"name": name, "bytes": path.stat().st_size,
                            "url": f"/api/v1/snapshots/{snapshot.pk}/files/{name}"})
        return out


class RecipeRequestSerializer(serializers.Serializer):
    recipe = serializers.JSONField(
        help_text="The recipe as an object, or as YAML/JSON text (see docs/snapshots.md). "
        "The body may also be the recipe itself."
    )


class SnapshotViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Snapshots: immutable, reproducible training datasets built from a recipe."""

    permission_classes = [IsManager]

    def get_queryset(self):
        snapshots = Snapshot.objects.select_related("job", "created_by").order_by("-id")
        params = self.request.query_params
        for name, choices in (("kind", Snapshot.Kind.values), ("status", Snapshot.Status.values)):
            value = params.get(name)
            if value:
                if value not in choices:
                    raise serializers.ValidationError({name: f"must be one of {', '.join(choices)}"})
                snapshots = snapshots.filter(**{name: value})
        return snapshots

    def get_serializer_class(self):
        return SnapshotSerializer if self.action == "list" else SnapshotDetailSerializer

    @extend_schema(request=RecipeRequestSerializer, responses={202: SnapshotDetailSerializer},
                   summary="Build a snapshot from a recipe (runs as a background job)")
    def create(self, request):
        data = request.data
        raw = data.get("recipe", data) if isinstance(data, dict) else data
        if hasattr(raw, "dict"):  # a QueryDict from a form post
            raw = raw.dict()
        try:
            snapshot = start_snapshot_build(raw, user=request.user)
        except RecipeError as exc:
            field = exc.field if exc.field == "recipe" else f"recipe.{exc.field}"
            raise serializers.ValidationError({field: exc.reason}) from None
        body = SnapshotDetailSerializer(snapshot).data
        body["job"] = JobSerializer(snapshot.job).data
        return APIResponse(body, status=status.HTTP_202_ACCEPTED,
                           headers={"Location": f"/api/v1/snapshots/{snapshot.pk}"})


def _parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive), None for no range, or "unsatisfiable"."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # several ranges or nonsense: RFC 9110 lets us send the whole file
    first, last = match.groups()
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


def _blocks(path, start: int, length: int):
    with open(path, "rb") as handle:
        handle.seek(start)
        left = length
        while left > 0:
            block = handle.read(min(BLOCK, left))
            if not block:
                break
            left -= len(block)
            yield block


class SnapshotFileView(APIView):
    """Download one file of a ready snapshot; supports `Range: bytes=...`."""

    permission_classes = [IsManager]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                              (206, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, pk: int, name: str):
        snapshot = get_object_or_404(Snapshot, pk=pk)
        path = snapshot.directory / name
        if name not in Snapshot.FILES or snapshot.status != Snapshot.Status.READY or not path.is_file():
            return APIResponse({"detail": f"snapshot {pk} has no file {name} "
                                f"(status {snapshot.status})", "code": "not_found", "errors": []},
                               status=status.HTTP_404_NOT_FOUND)
        size = path.stat().st_size
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        wanted = _parse_range(request.headers.get("Range", ""), size)
        if wanted == "unsatisfiable":
            response = APIResponse({"detail": f"the range is outside the file ({size} bytes)",
                                    "code": "range_not_satisfiable", "errors": []},
                                   status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE)
            response["Content-Range"] = f"bytes */{size}"
            return response
        start, end = wanted if wanted else (0, size - 1)
        length = max(0, end - start + 1)
        response = StreamingHttpResponse(_blocks(path, start, length), content_type=content_type,
                                         status=206 if wanted else 200)
        response["Content-Length"] = str(length)
        response["Accept-Ranges"] = "bytes"
        response["Content-Disposition"] = f'attachment; filename="snapshot-{pk}-{name}"'
        response["ETag"] = f'"{snapshot.content_hash}-{name}"'
        if wanted:
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
        return response

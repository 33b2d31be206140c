from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from winnow.roles import IsManager

from .models import Job, JobLogEntry
from .runner import request_cancel

LOG_TAIL = 50


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    log_tail = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id", "kind", "queue", "subject", "status", "progress", "params", "result", "error",
            "cancel_requested", "attempts", "max_attempts", "worker", "created_at", "started_at",
            "heartbeat_at", "finished_at", "log_tail",
        ]
        read_only_fields = fields

    def get_progress(self, job) -> dict:
        return {
            "done": job.progress_done,
            "total": job.progress_total,
            "fraction": job.progress_fraction,
            "stage": job.progress_stage,
        }

    def get_log_tail(self, job) -> list[dict]:
        entries = getattr(job, "log_tail_entries", None)
        if entries is None:
            entries = list(JobLogEntry.objects.filter(job=job).order_by("-id")[:LOG_TAIL])
        return [
            {"at": e.at, "level": e.level, "message": e.message} for e in reversed(entries)
        ]


class JobListSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = [f for f in JobSerializer.Meta.fields if f not in ("log_tail", "params")]


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Background jobs: status, progress (done/total), error and the tail of the log."""

    permission_classes = [IsManager]
    queryset = Job.objects.all()

    def get_serializer_class(self):
        return JobListSerializer if self.action == "list" else JobSerializer

    def get_queryset(self):
        jobs = Job.objects.select_related(None)
        params = self.request.query_params
        status = params.get("status")
        if status and status not in Job.Status.values:
            raise serializers.ValidationError(
                {"status": f"must be one of {', '.join(Job.Status.values)}"}
            )
        for name in ("status", "kind", "subject"):
            if params.get(name):
                jobs = jobs.filter(**{name: params[name]})
        return jobs

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Ask the job to stop: a queued job is cancelled at once, a running one at its next
        step (and undoes its partial writes). Cancelling a finished job changes nothing."""
        job = request_cancel(self.get_object())
        return Response(JobSerializer(job).data)

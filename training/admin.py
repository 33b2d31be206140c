from django.contrib import admin, messages

from corpus.models import RegisteredModel

from .models import TrainingCheckpoint, TrainingMetric, TrainingRun
from .services import RunStateError, cancel_run, resume_run


class MetricInline(admin.TabularInline):
    model = TrainingMetric
    extra = 0
    can_delete = False
    fields = ("split", "step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class CheckpointInline(admin.TabularInline):
    model = TrainingCheckpoint
    extra = 0
    can_delete = False
    readonly_fields = ("step", "path", "created_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "method", "mode", "base_model", "snapshot", "status",
                    "progress", "win_rate", "created_at")
    list_filter = ("status", "method", "mode")
    search_fields = ("name",)
    readonly_fields = [f.name for f in TrainingRun._meta.fields]
    inlines = [CheckpointInline, MetricInline]
    actions = ["cancel", "resume"]

    @admin.display(description="progress")
    def progress(self, run):
        return f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)

    @admin.action(description="Cancel the selected runs (checkpoint, then stop)")
    def cancel(self, request, queryset):
        for run in queryset:
            cancel_run(run)

    @admin.action(description="Resume the selected runs from their last checkpoint")
    def resume(self, request, queryset):
        for run in queryset:
            try:
                resume_run(run, request.user)
            except RunStateError as exc:
                self.message_user(request, str(exc), messages.WARNING)

    def has_add_permission(self, request):
        return False  # runs start through the API or the CLI, which validate the config


# The registry model lives in corpus; corpus may register its own admin (it loads first).
if not admin.site.is_registered(RegisteredModel):

    @admin.register(RegisteredModel)
    class RegisteredModelAdmin(admin.ModelAdmin):
        list_display = ("id", "name", "origin", "format", "base", "path", "created_at")
        list_filter = ("origin", "format")
        search_fields = ("name", "path")

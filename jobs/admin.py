from django.contrib import admin

from .models import Job, JobLogEntry
from .runner import request_cancel


class JobLogInline(admin.TabularInline):
    model = JobLogEntry
    extra = 0
    can_delete = False
    readonly_fields = ("at", "level", "message")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "subject", "status", "progress", "attempts", "created_at")
    list_filter = ("status", "kind", "queue")
    search_fields = ("subject", "error")
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobLogInline]
    actions = ["cancel"]

    @admin.display(description="progress")
    def progress(self, job):
        if job.progress_total:
            return f"{job.progress_done}/{job.progress_total}"
        return str(job.progress_done)

    @admin.action(description="Cancel the selected jobs")
    def cancel(self, request, queryset):
        for job in queryset:
            request_cancel(job)

    def has_add_permission(self, request):
        return False

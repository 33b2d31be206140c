from django.contrib import admin
from django.db.models import Count

from .models import Dataset, Feedback, Record, Response


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "records", "created_at", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner").annotate(_records=Count("records"))

    @admin.display(ordering="_records")
    def records(self, dataset):
        return dataset._records


class ResponseInline(admin.StackedInline):
    model = Response
    fk_name = "record"
    extra = 0
    fields = ("text", "author_kind", "author", "model_name", "status", "status_reason", "edited_from")
    raw_id_fields = ("author", "edited_from")


class FeedbackInline(admin.TabularInline):
    model = Feedback
    extra = 0
    fields = ("kind", "payload", "author_kind", "author", "model_name", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("author",)


@admin.register(Record)
class RecordAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "kind", "short_prompt", "source", "status", "external_id", "created_at")
    list_filter = ("status", "kind", "dataset")
    search_fields = ("prompt", "external_id")
    raw_id_fields = ("job",)
    list_select_related = ("dataset",)
    readonly_fields = ("created_at",)
    inlines = [ResponseInline, FeedbackInline]
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is the slow part

    @admin.display(description="prompt")
    def short_prompt(self, record):
        return record.prompt[:100]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ("id", "record", "short_text", "author_kind", "model_name", "status", "created_at")
    list_filter = ("status", "author_kind")
    search_fields = ("text", "model_name")
    raw_id_fields = ("record", "author", "edited_from")
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, response):
        return response.text[:100]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("id", "record", "kind", "author_kind", "author", "model_name", "created_at")
    list_filter = ("kind", "author_kind")
    raw_id_fields = ("record", "author")
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        from .feedback import validate_payload

        obj.payload = validate_payload(
            obj.kind, obj.payload, set(obj.record.responses.values_list("pk", flat=True))
        )
        super().save_model(request, obj, form, change)

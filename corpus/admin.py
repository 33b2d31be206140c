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


# -- snapshots -------------------------------------------------------------------------------

from django import forms  # noqa: E402
from django.contrib import messages  # noqa: E402
from django.shortcuts import redirect, render  # noqa: E402
from django.urls import path, reverse  # noqa: E402
from django.utils.html import format_html, format_html_join  # noqa: E402

from .models import Snapshot  # noqa: E402

EXAMPLE_RECIPE = """name: my-preference-set
kind: preference            # sft | preference | binary | text
sources:
  datasets: [demo]
filters:
  status: kept
  include_gold: false
policies:
  ties: drop
split:
  test_fraction: 0.1
  seed: 42
output:
  format: chat
"""


class RecipeForm(forms.Form):
    recipe = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 90, "style": "font-family: monospace"}),
        initial=EXAMPLE_RECIPE, help_text="YAML or JSON; see docs/snapshots.md",
    )


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Snapshots are immutable: browse and download here; build one from a recipe."""

    list_display = ("id", "name", "kind", "status", "train_rows", "test_rows", "created_by",
                    "created_at")
    list_filter = ("kind", "status")
    search_fields = ("name",)
    readonly_fields = ("name", "kind", "status", "counts", "content_hash", "error", "job",
                       "created_by", "created_at", "finished_at", "downloads", "card", "recipe",
                       "stats")
    fields = readonly_fields
    change_list_template = "admin/corpus/snapshot/change_list.html"

    def has_add_permission(self, request):
        return False  # built from a recipe (the "Build from a recipe" button), never typed in

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="train")
    def train_rows(self, snapshot):
        return snapshot.counts.get("train", "")

    @admin.display(description="test")
    def test_rows(self, snapshot):
        return snapshot.counts.get("test", "")

    @admin.display(description="files")
    def downloads(self, snapshot):
        if snapshot.status != Snapshot.Status.READY:
            return "-"
        names = [n for n in Snapshot.FILES if (snapshot.directory / n).is_file()]
        return format_html_join(
            " · ", '<a href="{}">{}</a>',
            ((reverse("admin:corpus_snapshot_file", args=[snapshot.pk, n]), n) for n in names),
        )

    @admin.display(description="card")
    def card(self, snapshot):
        path = snapshot.directory / "card.md"
        if not path.is_file():
            return "-"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', path.read_text())

    def get_urls(self):
        return [
            path("build/", self.admin_site.admin_view(self.build_view), name="corpus_snapshot_build"),
            path("<int:pk>/files/<str:name>", self.admin_site.admin_view(self.file_view),
                 name="corpus_snapshot_file"),
            *super().get_urls(),
        ]

    def build_view(self, request):
        from .snapshots.job import start_snapshot_build
        from .snapshots.recipe import RecipeError

        from django.core.exceptions import PermissionDenied

        if not request.user.has_perm("corpus.view_snapshot"):
            raise PermissionDenied
        form = RecipeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                snapshot = start_snapshot_build(form.cleaned_data["recipe"], user=request.user)
            except RecipeError as exc:
                form.add_error("recipe", f"{exc.field}: {exc.reason}")
            else:
                messages.success(request, f"Building snapshot {snapshot.pk} (job {snapshot.job_id}); "
                                          "the worker runs it.")
                return redirect("admin:corpus_snapshot_change", snapshot.pk)
        context = {**self.admin_site.each_context(request), "form": form,
                   "title": "Build a snapshot from a recipe", "opts": self.model._meta}
        return render(request, "admin/corpus/snapshot/build.html", context)

    def file_view(self, request, pk, name):
        from django.http import FileResponse, Http404

        snapshot = Snapshot.objects.filter(pk=pk, status=Snapshot.Status.READY).first()
        if snapshot is None or name not in Snapshot.FILES or not (snapshot.directory / name).is_file():
            raise Http404("no such snapshot file")
        return FileResponse(open(snapshot.directory / name, "rb"), as_attachment=True,
                            filename=f"snapshot-{pk}-{name}")

"""Admin screens: run the default pipeline on datasets, read a run's report, revert it, and
review PII findings."""

from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from corpus.admin import DatasetAdmin
from corpus.models import Dataset

from .models import CurationDecision, CurationRun, PIIFinding
from .pipeline import RevertRefused, revert_run
from .review import ReviewError, review_finding
from .runs import start_run


@admin.action(description="Curate: run the default pipeline (quality, dedup, near-dup, PII)")
def run_default_pipeline(modeladmin, request, queryset):
    for dataset in queryset:
        run = start_run(dataset, None, request.user)
        url = reverse("admin:curate_curationrun_change", args=[run.pk])
        modeladmin.message_user(request, format_html(
            'Queued <a href="{}">curation run #{}</a> on {}.', url, run.pk, dataset.name))


# The corpus owns DatasetAdmin; curation adds its action to it without editing corpus/.
DatasetAdmin.actions = [*(DatasetAdmin.actions or []), run_default_pipeline]


@admin.action(description="Revert the selected runs (latest first)")
def revert_runs(modeladmin, request, queryset):
    for run in queryset.order_by("-pk"):
        try:
            restored = revert_run(run, request.user)
        except RevertRefused as exc:
            modeladmin.message_user(request, f"Run #{run.pk}: {exc}", messages.ERROR)
        else:
            modeladmin.message_user(
                request, f"Run #{run.pk} reverted: {restored['records']} records, "
                         f"{restored['responses']} responses restored.")


def _bars(sizes: dict) -> str:
    """A small horizontal bar chart of cluster sizes (clusters per size)."""
    if not sizes:
        return ""
    top = max(sizes.values())
    rows = format_html_join(
        "", '<tr><td style="text-align:right;padding-right:6px">{} records</td><td>'
            '<div style="background:#417690;height:12px;width:{}px"></div></td><td>{}</td></tr>',
        ((size, max(2, int(240 * n / top)), n) for size, n in sizes.items()))
    return format_html("<table>{}</table>", rows)


@admin.register(CurationRun)
class CurationRunAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "status", "steps", "totals", "created_by", "created_at")
    list_filter = ("status",)
    actions = [revert_runs]
    readonly_fields = ("dataset", "status", "job", "pipeline", "report_view", "error",
                       "created_by", "created_at", "finished_at", "reverted_at", "reverted_by")
    fields = readonly_fields
    list_select_related = ("dataset", "created_by")

    def has_add_permission(self, request):
        return False  # runs start from the dataset list ("Curate" action), the API or the CLI

    @admin.display(description="steps")
    def steps(self, run):
        return ", ".join(s["step"] for s in run.pipeline)

    @admin.display(description="totals")
    def totals(self, run):
        return ", ".join(f"{n} {a}" for a, n in sorted((run.report or {}).get("totals", {}).items()))

    @admin.display(description="report")
    def report_view(self, run):
        parts = []
        for index, step in enumerate((run.report or {}).get("steps", []), start=1):
            rules = format_html_join("", "<li>{}: {}</li>", sorted(step.get("by_rule", {}).items()))
            examples = format_html_join(
                "", "<li><code>{}</code> record #{}: {}</li>",
                ((ex["action"], ex["record"], ex["reason"])
                 for exs in step.get("examples", {}).values() for ex in exs))
            parts.append(format_html(
                "<h3>{}. {}</h3><ul>{}</ul>{}<details><summary>examples</summary><ul>{}</ul>"
                "</details>", index, step["step"], rules or format_html("<li>no changes</li>"),
                _bars(step.get("cluster_sizes") or {}), examples))
        decisions = reverse("admin:curate_curationdecision_changelist") + f"?run__id__exact={run.pk}"
        parts.append(format_html('<p><a href="{}">All decisions of this run</a></p>', decisions))
        return format_html_join("", "{}", ((p,) for p in parts))


@admin.register(CurationDecision)
class CurationDecisionAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "step", "action", "rule", "record", "response", "cluster",
                    "similarity", "reason")
    list_filter = ("action", "step", "rule")
    raw_id_fields = ("run", "record", "response")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.action(description="Approve the selected redactions")
def approve_findings(modeladmin, request, queryset):
    _review(modeladmin, request, queryset, "approve")


@admin.action(description="Reject (false alarm: put the original text back)")
def reject_findings(modeladmin, request, queryset):
    _review(modeladmin, request, queryset, "reject")


def _review(modeladmin, request, queryset, verdict):
    done = 0
    for finding in queryset.select_related("run", "decision"):
        try:
            with transaction.atomic():
                review_finding(finding, verdict, None, request.user, now=timezone.now())
            done += 1
        except ReviewError as exc:
            modeladmin.message_user(request, f"Finding #{finding.pk}: {exc}", messages.ERROR)
    modeladmin.message_user(request, f"{done} finding(s) {verdict}d.")


@admin.register(PIIFinding)
class PIIFindingAdmin(admin.ModelAdmin):
    """The review queue. Edit a finding's replacement and save to apply it ("edited")."""

    list_display = ("id", "entity_type", "original", "replacement", "policy", "score",
                    "review_status", "record", "response", "run")
    list_filter = ("review_status", "entity_type", "policy")
    actions = [approve_findings, reject_findings]
    raw_id_fields = ("run", "decision", "record", "response", "reviewed_by")
    fields = ("entity_type", "original", "replacement", "policy", "score", "field", "start", "end",
              "review_status", "record", "response", "run", "reviewed_by", "reviewed_at")
    readonly_fields = ("entity_type", "original", "policy", "score", "field", "start", "end",
                       "review_status", "record", "response", "run", "reviewed_by", "reviewed_at")

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        if change and "replacement" in form.changed_data:
            with transaction.atomic():
                review_finding(obj, "edit", obj.replacement, request.user, now=timezone.now())
        else:
            super().save_model(request, obj, form, change)

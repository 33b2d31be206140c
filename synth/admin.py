"""Admin screens: providers (health check, try it, serve a registered model), generation jobs
(create and launch, a live progress bar, browse the output and the discards)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from corpus.models import Dataset
from jobs.runner import request_cancel

from .generation import create_generation_job
from .methods import get_method, method_names
from .models import CachedCompletion, DiscardedOutput, GenerationJob, ModelServer, Provider
from .serving import check_health, try_provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("name", "model_short", "base_url", "max_concurrency", "requests_per_minute",
                    "tokens_per_minute", "try_link")
    search_fields = ("name", "model", "base_url")
    readonly_fields = ("registered_model", "created_at", "updated_at")
    actions = ["check_health_action"]
    fieldsets = [
        (None, {"fields": ("name", "base_url", "model", "api_key_env", "supports_json_mode")}),
        ("Sampling and limits", {"fields": ("default_params", "max_concurrency", "requests_per_minute",
                                            "tokens_per_minute", "timeout_seconds", "max_retries")}),
        ("Prices (per 1k tokens)", {"fields": ("price_prompt_per_1k", "price_completion_per_1k")}),
        ("Local model", {"fields": ("registered_model", "created_at", "updated_at")}),
    ]

    @admin.display(description="model")
    def model_short(self, provider):
        return provider.model if len(provider.model) < 50 else "…" + provider.model[-48:]

    @admin.display(description="")
    def try_link(self, provider):
        return format_html('<a href="{}">try it / health</a>', reverse("admin:synth_provider_try", args=[provider.pk]))

    @admin.action(description="Check health of the selected providers")
    def check_health_action(self, request, queryset):
        for provider in queryset:
            result = check_health(provider)
            if result["ok"]:
                self.message_user(request, f"{provider.name}: healthy ({result['latency_s']} s)", messages.SUCCESS)
            else:
                self.message_user(request, f"{provider.name}: {result['error']}", messages.ERROR)

    def get_urls(self):
        return [path("<int:pk>/try/", self.admin_site.admin_view(self.try_view), name="synth_provider_try"),
                *super().get_urls()]

    def try_view(self, request, pk):
        provider = get_object_or_404(Provider, pk=pk)
        if not self.has_change_permission(request, provider):
            return redirect("admin:index")
        prompt = request.POST.get("prompt", "Say hello in one short sentence.")
        result = None
        if request.method == "POST":
            result = check_health(provider) if "health" in request.POST else try_provider(provider, prompt, max_tokens=64)
        context = {**self.admin_site.each_context(request), "title": f"Try {provider.name}", "provider": provider,
                   "prompt": prompt, "result": result, "opts": self.model._meta}
        return render(request, "admin/synth/provider_try.html", context)


class GenerationJobForm(forms.Form):
    method = forms.ChoiceField(choices=[])
    provider = forms.ModelChoiceField(queryset=Provider.objects.all())
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), required=False,
                                     help_text="Where output goes (and input comes from)")
    new_dataset = forms.CharField(required=False, help_text="…or the name of a new dataset")
    config = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "cols": 80}), required=False, initial="{}",
                             help_text='The method\'s settings as JSON, e.g. {"num_instructions": 20}')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["method"].choices = [(n, f"{n}: {get_method(n).title}") for n in method_names()]
        local = Provider.objects.filter(name="local").first()
        if local:
            self.fields["provider"].initial = local.pk

    def clean_config(self):
        try:
            value = json.loads(self.cleaned_data["config"] or "{}")
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def clean(self):
        data = super().clean()
        if not data.get("dataset") and not data.get("new_dataset"):
            raise forms.ValidationError("choose a dataset or name a new one")
        return data


class DiscardInline(admin.TabularInline):
    model = DiscardedOutput
    extra = 0
    can_delete = False
    fields = ("stage", "reason", "raw_text", "record")
    readonly_fields = fields
    max_num = 0
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("id")


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "provider", "dataset", "status", "progress", "records_written",
                    "responses_written", "feedback_written", "discarded", "cost", "created_at")
    list_filter = ("method", "provider", "job__status")
    list_select_related = ("job", "provider", "dataset")
    change_form_template = "admin/synth/generationjob/change_form.html"
    readonly_fields = [f.name for f in GenerationJob._meta.fields] + ["output_links"]
    inlines = [DiscardInline]
    actions = ["cancel"]

    @admin.display(description="status")
    def status(self, generation):
        return generation.job.status

    @admin.display(description="progress")
    def progress(self, generation):
        job = generation.job
        return f"{job.progress_done}/{job.progress_total}" if job.progress_total else str(job.progress_done)

    @admin.display(description="output")
    def output_links(self, generation):
        records = reverse("admin:corpus_record_changelist") + f"?job__exact={generation.job_id}"
        responses = reverse("admin:corpus_response_changelist") + f"?q=&record__dataset__id__exact={generation.dataset_id}"
        return format_html('<a href="{}">records it wrote</a> · <a href="{}">responses in the dataset</a> · '
                           '<a href="{}">its job and log</a>', records, responses,
                           reverse("admin:jobs_job_change", args=[generation.job_id]))

    @admin.action(description="Cancel the selected jobs")
    def cancel(self, request, queryset):
        for generation in queryset:
            request_cancel(generation.job)

    def add_view(self, request, form_url="", extra_context=None):
        form = GenerationJobForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            dataset = data["dataset"] or Dataset.objects.get_or_create(name=data["new_dataset"],
                                                                       defaults={"owner": request.user})[0]
            try:
                generation = create_generation_job(method=data["method"], provider=data["provider"],
                                                   dataset=dataset, config=data["config"], created_by=request.user)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(None, f"{field}: {' '.join(errors)}")
            else:
                self.message_user(request, f"Launched {generation.method} job {generation.pk}", messages.SUCCESS)
                return redirect("admin:synth_generationjob_change", generation.pk)
        schemas = {n: get_method(n).Config.model_json_schema() for n in method_names()}
        context = {**self.admin_site.each_context(request), "title": "Create a generation job", "form": form,
                   "opts": self.model._meta, "schemas_json": json.dumps(schemas)}
        return render(request, "admin/synth/generationjob/add.html", context)


@admin.register(ModelServer)
class ModelServerAdmin(admin.ModelAdmin):
    list_display = ("registered_model", "provider", "host", "port", "pid", "started_at")


@admin.register(CachedCompletion)
class CachedCompletionAdmin(admin.ModelAdmin):
    list_display = ("id", "model", "short_text", "prompt_tokens", "completion_tokens", "job", "created_at")
    search_fields = ("key", "text")
    raw_id_fields = ("job", "provider")
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, row):
        return row.text[:80]

    def has_add_permission(self, request):
        return False

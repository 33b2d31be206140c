"""The annotation workbench and the manager pages. The pages are thin: the workbench talks
to the REST API (annotate.api) from static JavaScript; manager pages render server-side."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.shortcuts import get_object_or_404, render

from annotate import stats
from annotate.api import project_role
from annotate.models import AnnotationProject, Item
from annotate.render import markdown_html
from corpus.models import Dataset
from winnow.roles import is_manager

from . import plots

LOGIN_URL = "/login/"


def _project(request, pk, *roles):
    project = get_object_or_404(AnnotationProject, pk=pk)
    role = project_role(project, request.user)
    if role is None:
        raise PermissionDenied
    if roles and role not in roles:
        raise PermissionDenied
    return project, role


@login_required(login_url=LOGIN_URL)
def project_list(request):
    projects = AnnotationProject.objects.select_related("dataset").order_by("-id")
    if not is_manager(request.user):
        projects = projects.filter(memberships__user=request.user)
    projects = projects.annotate(n_items=Count("items", distinct=True), n_done=Sum("items__submitted"))
    rows = []
    for project in projects:
        wanted = (project.n_items or 0) * project.overlap
        done = project.n_done or 0
        rows.append({"project": project, "role": project_role(project, request.user),
                     "wanted": wanted, "done": done,
                     "percent": round(100 * done / wanted) if wanted else 0,
                     "kinds": ", ".join(q["kind"] for q in project.questions)})
    return render(request, "annotate/project_list.html",
                  {"rows": rows, "can_create": is_manager(request.user)})


@login_required(login_url=LOGIN_URL)
def workbench(request, pk):
    project, role = _project(request, pk)
    config = {"id": project.pk, "name": project.name, "questions": project.questions,
              "api": f"/api/v1/annotation-projects/{project.pk}/"}
    return render(request, "annotate/workbench.html", {
        "project": project, "role": role, "config": config,
        "guidelines_html": markdown_html(project.guidelines or "_No guidelines yet._"),
    })


@login_required(login_url=LOGIN_URL)
def manage(request, pk):
    project, role = _project(request, pk, "manager", "reviewer")
    progress = stats.progress(project)
    report = stats.agreement_report(project, with_timeline=True)
    # Each annotator's agreement with the others, averaged over the questions.
    shares: dict = {}
    for q in report["questions"]:
        for who, share in (q.get("per_annotator") or {}).items():
            shares.setdefault(who, []).append(share)
    for row in progress["annotators"]:
        values = shares.get(row["annotator"])
        row["agreement"] = round(100 * sum(values) / len(values)) if values else None
    charts = []
    for q in report["questions"]:
        if q.get("histogram"):
            charts.append(plots.bar_chart(q["histogram"], title=f"{q['question']}: ratings given"))
        if q.get("timeline"):
            charts.append(plots.line_chart([(p["submissions"], p["alpha"]) for p in q["timeline"]],
                                           title=f"{q['question']}: Krippendorff's alpha over time"))
    return render(request, "annotate/manage.html", {
        "project": project, "role": role, "progress": progress, "report": report, "charts": charts,
        "gold": stats.gold_accuracy(project),
        "pending_reviews": len(stats.disagreements(project, include_reviewed=False)),
        "members": project.memberships.select_related("user").order_by("role", "user__username"),
    })


@login_required(login_url=LOGIN_URL)
def review(request, pk):
    project, role = _project(request, pk, "manager", "reviewer")
    pending = request.GET.get("all") != "1"
    entries = stats.disagreements(project, include_reviewed=not pending)[:50]
    items = {i.pk: i for i in Item.objects.filter(pk__in={e["item"] for e in entries}).select_related("record")}
    from corpus.models import Response

    texts = dict(Response.objects.filter(pk__in={r for i in items.values() for r in i.response_ids})
                 .values_list("pk", "text"))
    for entry in entries:
        item = items[entry["item"]]
        entry["prompt_html"] = markdown_html(item.record.prompt)
        entry["responses"] = [{"id": r, "letter": "AB"[n] if n < 2 else str(n + 1), "html": markdown_html(texts.get(r, ""))}
                              for n, r in enumerate(item.response_ids)]
        entry["question_def"] = project.question(entry["question"])
        for answer in entry["answers"]:
            answer["summary"] = _summarise(entry["question_def"], answer["answer"], answer["response_order"],
                                           item.response_ids)
        if entry["final"]:
            entry["final"]["summary"] = _summarise(entry["question_def"], entry["final"]["answer"],
                                                   item.response_ids, item.response_ids)
    return render(request, "annotate/review.html", {"project": project, "entries": entries, "pending": pending})


def _summarise(question, answer, order, stored) -> str:
    """An answer in the reviewer's frame (responses named by their stored letter)."""
    name = {r: ("AB"[n] if n < 2 else str(n + 1)) for n, r in enumerate(stored)}
    if answer is None:
        return "—"
    kind = question["kind"]
    if kind == "pairwise":
        if answer["choice"] == "tie":
            return "tie"
        winner = order[0 if answer["choice"] == "a" else 1]
        return f"{name.get(winner, winner)} better" + (f" ({answer['strength']})" if answer.get("strength") else "")
    if kind == "rating":
        return ", ".join(f"{name.get(c['response'])}·{c.get('aspect', '')}={c['value']}" for c in answer)
    if kind == "binary":
        return ", ".join(f"{name.get(c['response'])} {'✓' if c['label'] else '✗'}" for c in answer)
    if kind == "ranking":
        if answer.get("all_bad"):
            return "all bad"
        return " > ".join("=".join(name.get(r, str(r)) for r in (g if isinstance(g, list) else [g]))
                          for g in answer.get("ranking", []))
    return str(answer)


@login_required(login_url=LOGIN_URL)
def setup(request, pk=None):
    if not is_manager(request.user):
        raise PermissionDenied
    return render(request, "annotate/setup.html", {"datasets": Dataset.objects.order_by("name")})

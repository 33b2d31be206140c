from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from corpus.models import Dataset
from jobs.models import Job


@login_required
def home(request):
    """The landing page: where things are. The dashboards of later stages grow from here."""
    return render(
        request,
        "frontend/home.html",
        {
            "datasets": Dataset.objects.order_by("-id")[:20],
            "jobs": Job.objects.order_by("-id")[:10],
        },
    )

"""Training run pages: the list, and one run with its live loss curve and evaluation table.

The pages are shells; the numbers come from the REST API (`training-runs/{id}` and its
`metrics` stream, polled), so what a manager watches is what a script would read.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from training.models import TrainingRun
from winnow.roles import is_manager


def _require_manager(request) -> None:
    if not is_manager(request.user):
        raise PermissionDenied("training runs are for managers")


@login_required(login_url="/login/")
def run_list(request):
    _require_manager(request)
    runs = TrainingRun.objects.select_related("base_model", "snapshot")[:100]
    return render(request, "training/run_list.html", {"runs": runs})


@login_required(login_url="/login/")
def run_detail(request, pk):
    _require_manager(request)
    run = get_object_or_404(TrainingRun.objects.select_related("base_model", "snapshot", "artifact"), pk=pk)
    return render(request, "training/run_detail.html", {"run": run})

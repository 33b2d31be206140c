from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from winnow.demo import WIN_RATE_GOAL
from winnow.roles import is_manager

from . import loop, plots


@login_required
def home(request):
    """The loop at a glance: what each stage holds, the jobs, and how the models got better round
    after round. Annotators have nothing to do here; their place is the workbench."""
    if not is_manager(request.user):
        return redirect("/annotate/")
    rounds = loop.rounds()
    charts = [
        plots.line_chart([(r["round"], r["loss"]) for r in rounds], title="Last training loss per round",
                         y_min=0.0, y_max=0.1, x_label="round", guides=(), empty="no finished runs yet"),
        plots.line_chart([(r["round"], r["win_rate"]) for r in rounds], title="Win rate over the base model",
                         y_min=0.0, y_max=1.0, x_label="round", guides=(0.5, WIN_RATE_GOAL),
                         empty="no evaluated runs yet"),
    ]
    return render(request, "frontend/home.html", {
        "stages": loop.stages(), "jobs": loop.jobs(), "rounds": rounds[::-1][:10], "charts": charts,
        "goal": WIN_RATE_GOAL,
    })

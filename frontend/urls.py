from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from . import annotate_views, training_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", RedirectView.as_view(url=static("frontend/favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(template_name="annotate/login.html",
                                                next_page="/annotate/"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("annotate/", annotate_views.project_list, name="annotate-projects"),
    path("annotate/new", annotate_views.setup, name="annotate-setup"),
    path("annotate/<int:pk>/", annotate_views.workbench, name="annotate-workbench"),
    path("annotate/<int:pk>/manage", annotate_views.manage, name="annotate-manage"),
    path("annotate/<int:pk>/review", annotate_views.review, name="annotate-review"),
    path("training/", training_views.run_list, name="training-runs"),
    path("training/<int:pk>/", training_views.run_detail, name="training-run"),
]

from django.apps import AppConfig


class CurateConfig(AppConfig):
    name = "curate"

from django.apps import AppConfig


class WinnowConfig(AppConfig):
    name = "winnow"

    def ready(self):
        from . import throttles  # noqa: F401  (connects the failed-login counter)

from django.apps import AppConfig


class CurateConfig(AppConfig):
    name = "curate"

    def ready(self) -> None:
        # Registers the curate.run job kind and every pipeline step.
        from . import runs  # noqa: F401

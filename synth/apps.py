from django.apps import AppConfig


class SynthConfig(AppConfig):
    name = "synth"
    verbose_name = "Synthetic data"

    def ready(self):
        # Registers the generation methods and the `synth.generate` job handler.
        from . import generation, methods  # noqa: F401

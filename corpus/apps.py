from django.apps import AppConfig


class CorpusConfig(AppConfig):
    name = "corpus"
    verbose_name = "Corpus"

    def ready(self) -> None:
        from . import importing  # noqa: F401  (registers the corpus.import job handler)
        from .snapshots import job  # noqa: F401  (registers the corpus.snapshot job handler)

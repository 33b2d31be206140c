from django.core.management.base import BaseCommand

from corpus.bundled_model import prepare_bundled_model


class Command(BaseCommand):
    help = "Convert the bundled SmolLM2 GGUF into a Hugging Face folder under the data directory (once)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="convert again even if present")

    def handle(self, *args, force=False, **options):
        folder = prepare_bundled_model(force=force, echo=self.stdout.write)
        self.stdout.write(f"bundled model ready: {folder}")

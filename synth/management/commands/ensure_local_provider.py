"""Point the "local" provider at the bundled model's server (run by `winnow run` at start)."""

from django.core.management.base import BaseCommand

from synth.serving import ensure_local_provider


class Command(BaseCommand):
    help = 'Create or repoint the "local" provider (the bundled model served on loopback)'

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None)
        parser.add_argument("--host", default=None)

    def handle(self, *args, port, host, **options):
        provider = ensure_local_provider(port=port, host=host)
        self.stdout.write(f"provider {provider.name!r}: {provider.base_url} ({provider.registered_model})")

from django.core.management.base import BaseCommand

from annotate.demo import make_demo


class Command(BaseCommand):
    help = "Create demo annotation projects, a dataset and users maria/ann/bob/rita."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="winnow-demo-pass")

    def handle(self, *args, password, **options):
        demo = make_demo(password)
        for name, project in demo["projects"].items():
            self.stdout.write(f"project {project.pk}: {name} ({project.items.count()} items)")
        self.stdout.write(f"users: maria (manager), ann, bob (annotators), rita (reviewer); password {password!r}")

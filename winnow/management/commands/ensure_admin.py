"""Create the role groups and, when no admin exists, an admin account with an API token."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from winnow.roles import GROUP_ROLES


class Command(BaseCommand):
    help = "Create role groups and a first admin account if there is none"

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, username, url, **options):
        for role in GROUP_ROLES:
            Group.objects.get_or_create(name=role)
        users = get_user_model()
        credentials = settings.DATA_DIR / "admin-credentials.txt"
        if users.objects.filter(is_superuser=True).exists():
            where = f" (first password in {credentials})" if credentials.exists() else ""
            self.stdout.write(f"Admin account exists{where}. Log in at {url}/admin/")
            return
        password = secrets.token_urlsafe(12)
        admin = users.objects.create_superuser(username=username, email="", password=password)
        token, _ = Token.objects.get_or_create(user=admin)
        credentials.parent.mkdir(parents=True, exist_ok=True)
        credentials.write_text(
            f"username: {username}\npassword: {password}\napi token: {token.key}\n"
        )
        credentials.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(
            f"Created admin account.\n  Log in at {url}/admin/ as {username} / {password}\n"
            f"  API: Authorization: Token {token.key}\n  (saved in {credentials})"
        ))

"""Shared fixtures: users of every role with API clients, and a real worker to drain the queue."""

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from corpus.models import Dataset
from winnow.roles import grant_role

ROLES = ("admin", "manager", "annotator", "norole")


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    # PBKDF2 costs ~0.3 s a user; tests create many users and check no password strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Throttle counters live in the cache: each test starts with none.
    from django.core.cache import cache

    cache.clear()


def make_user(django_user_model, role: str):
    user = django_user_model.objects.create_user(username=f"{role}-user", password="pw-for-tests-1")
    if role != "norole":
        grant_role(user, role)
    return user


@pytest.fixture
def users(db, django_user_model):
    return {role: make_user(django_user_model, role) for role in ROLES}


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def clients(users):
    """An API client per role, authenticated with `Authorization: Token <key>`, plus anon."""
    out = {role: token_client(user) for role, user in users.items()}
    out["anonymous"] = APIClient()
    return out


@pytest.fixture
def manager_client(clients):
    return clients["manager"]


@pytest.fixture
def dataset(users):
    return Dataset.objects.create(name="demo", description="test data", owner=users["manager"])


@pytest.fixture
def drain_queue(django_capture_on_commit_callbacks, monkeypatch):
    """Run the real worker (manage.py worker --batch) in-process until the queue is empty.

    Use it as a context: jobs enqueued inside the block (on commit) are run on exit. The
    worker's between-task close_old_connections() would close the test's connection (which
    holds the test transaction), so only that call is made a no-op here; tests/e2e runs the
    worker unmodified in its own process.
    """
    from django_tasks_db.management.commands import db_worker

    monkeypatch.setattr(db_worker, "close_old_connections", lambda: None)

    class Drain:
        def __enter__(self):
            self._capture = django_capture_on_commit_callbacks(execute=True)
            self._capture.__enter__()
            return self

        def __exit__(self, *exc):
            self._capture.__exit__(*exc)
            if exc[0] is None:
                run_worker_batch()

    return Drain


def run_worker_batch():
    call_command(
        "worker", batch=True, interval=0, startup_delay=False, reload=False, verbosity=0,
        queue_name="default,training",
    )


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row if isinstance(row, str) else json.dumps(row))
            handle.write("\n")
    return path

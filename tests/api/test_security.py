"""Security checks that cut across apps: downloads stay in their folder, filters do not inject
SQL, session views need a CSRF token, sign-in is throttled, and production settings pass
`manage.py check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from corpus.models import Dataset, Feedback, Record, Response, Snapshot
from training.models import TrainingRun
from winnow.roles import grant_role

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long test password"


# -- downloads cannot leave their folder ---------------------------------------------------------

ESCAPES = ["../../winnow.sqlite3", "..%2F..%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt", "/etc/passwd",
           "..\\..\\secret.txt", "train.jsonl/../../secret.txt", "train.jsonl%00.txt", "....//....//secret.txt"]


@pytest.fixture
def secret_file(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    path = settings.DATA_DIR / "secret.txt"
    path.write_text("top secret\n")
    return path


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def ready_snapshot(db, secret_file):
    snapshot = Snapshot.objects.create(name="s", kind="sft")
    snapshot.directory.mkdir(parents=True, exist_ok=True)
    (snapshot.directory / "train.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    snapshot.status = Snapshot.Status.READY
    snapshot.save(update_fields=["status"])
    return snapshot


@pytest.mark.parametrize("name", ESCAPES)
def test_snapshot_files_cannot_escape_their_folder(manager_client, users, ready_snapshot, secret_file, name):
    assert manager_client.get(f"/api/v1/snapshots/{ready_snapshot.pk}/files/train.jsonl").status_code == 200
    reply = manager_client.get(f"/api/v1/snapshots/{ready_snapshot.pk}/files/{name}")
    assert reply.status_code == 404 and b"top secret" not in body(reply)
    admin = Client()
    admin.force_login(users["admin"])
    assert admin.get(f"/admin/corpus/snapshot/{ready_snapshot.pk}/files/train.jsonl").status_code == 200
    # The admin answers 404, or (for a path with a slash) redirects to a page that is not a file.
    page = admin.get(f"/admin/corpus/snapshot/{ready_snapshot.pk}/files/{name}", follow=True)
    assert page.status_code in (200, 404) and not page.has_header("Content-Disposition")
    assert b"top secret" not in body(page)


@pytest.fixture
def trained_run(db, secret_file):
    from corpus.models import RegisteredModel

    base = RegisteredModel.objects.create(name="base", origin="local", path="/nonexistent")
    snapshot = Snapshot.objects.create(name="p", kind="preference")
    run = TrainingRun.objects.create(method="dpo", base_model=base, snapshot=snapshot, status="succeeded")
    run.artifact_dir.mkdir(parents=True)
    (run.artifact_dir / "adapter_config.json").write_text("{}")
    (run.output_dir / "trainer.log").write_text("not an artifact\n")
    (run.artifact_dir / "link.txt").symlink_to(secret_file)  # a link out of the folder
    return run


@pytest.mark.parametrize("name", ESCAPES + ["artifact/link.txt", "trainer.log", "artifact/../trainer.log",
                                            "artifact"])
def test_run_artifacts_cannot_escape_their_folder(manager_client, trained_run, name):
    ok = manager_client.get(f"/api/v1/training-runs/{trained_run.pk}/artifacts", {"file": "artifact/adapter_config.json"})
    assert ok.status_code == 200 and body(ok) == b"{}"
    reply = manager_client.get(f"/api/v1/training-runs/{trained_run.pk}/artifacts", {"file": name})
    assert reply.status_code == 404, name
    assert b"top secret" not in body(reply) and b"not an artifact" not in body(reply)


@pytest.mark.parametrize("path", ["/static/../winnow/settings.py", "/static/%2e%2e/%2e%2e/winnow/settings.py",
                                  "/static/annotate/../../../../manage.py", "/media/../winnow.sqlite3"])
def test_static_files_cannot_escape_their_folder(client, path):
    reply = client.get(path)
    assert reply.status_code in (301, 302, 404), path
    assert b"SECRET_KEY" not in reply.content and b"DJANGO_SETTINGS_MODULE" not in reply.content


# -- filters are parameters, never SQL -----------------------------------------------------------

INJECTIONS = ["' OR '1'='1", "1 OR 1=1", "x'; DROP TABLE corpus_record; --", '" OR ""="', "1) OR (1=1",
              "%' OR 1=1 --", "\\' OR 1=1 #"]


@pytest.fixture
def rows(users):
    dataset = Dataset.objects.create(name="sqli", owner=users["manager"])
    for n in range(3):
        record = Record.objects.create(dataset=dataset, prompt=f"p{n}", source="import:a.jsonl",
                                       external_id=f"e{n}", metadata={"topic": "maths"})
        a = Response.objects.create(record=record, text="a", author_kind="model", model_name="m1")
        b = Response.objects.create(record=record, text="b", author_kind="human")
        Feedback.objects.create(record=record, kind="pairwise", author_kind="human",
                                payload={"a": a.pk, "b": b.pk, "choice": "a"})
    return dataset


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("param", ["source", "external_id", "metadata.topic"])
def test_record_filters_match_literally(manager_client, rows, param, value):
    """Values are compared as they are: no row has them, so no row comes back."""
    url = f"/api/v1/datasets/{rows.pk}/records"
    assert len(manager_client.get(url).json()["results"]) == 3
    reply = manager_client.get(url, {param: value})
    assert reply.status_code == 200 and reply.json()["results"] == []
    assert Record.objects.count() == 3


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("url, param", [
    ("/api/v1/responses", "status"), ("/api/v1/responses", "author_kind"), ("/api/v1/responses", "record"),
    ("/api/v1/responses", "dataset"), ("/api/v1/feedback", "kind"), ("/api/v1/feedback", "record"),
    ("/api/v1/feedback", "dataset"), ("/api/v1/jobs", "status"), ("/api/v1/jobs", "kind"),
    ("/api/v1/jobs", "subject"), ("/api/v1/curation-runs", "dataset"), ("/api/v1/generation-jobs", "dataset"),
    ("/api/v1/generation-jobs", "method"), ("/api/v1/generation-jobs", "status"), ("/api/v1/models", "origin"),
    ("/api/v1/pii-findings", "run"), ("/api/v1/pii-findings", "review_status"),
])
def test_list_filters_refuse_or_match_nothing(manager_client, rows, url, param, value):
    reply = manager_client.get(url, {param: value})
    assert reply.status_code in (200, 400), reply.content
    if reply.status_code == 200:
        body = reply.json()
        assert (body["results"] if isinstance(body, dict) else body) == [], (url, param)
    assert (Record.objects.count(), Response.objects.count(), Feedback.objects.count()) == (3, 6, 3)


@pytest.mark.parametrize("key", ["topic'--", "topic) OR 1=1", "a__b", 'x" OR "1"="1', ""])
def test_metadata_keys_are_checked_before_they_reach_a_query(manager_client, rows, key):
    reply = manager_client.get(f"/api/v1/datasets/{rows.pk}/records", {f"metadata.{key}": "maths"})
    assert reply.status_code == 400 and f"metadata.{key}" in reply.json()["errors"][0]["field"]


# -- session views need a CSRF token -------------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/api/v1/datasets", {"name": "csrf"}),
    ("/logout/", {}),
    ("/annotate/new", {"name": "x"}),
    ("/admin/corpus/dataset/add/", {"name": "csrf"}),
])
def test_session_posts_without_a_csrf_token_are_refused(users, path, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    reply = client.post(path, body)
    assert reply.status_code == 403, (path, reply.status_code)
    assert not Dataset.objects.filter(name="csrf").exists()
    # The same post with the token gets through the check.
    client.get("/annotate/")
    token = client.cookies["csrftoken"].value
    passed = client.post(path, body, HTTP_X_CSRFTOKEN=token)
    assert passed.status_code != 403, path


# -- sign-in is throttled ------------------------------------------------------------------------

@pytest.fixture
def person(django_user_model):
    user = django_user_model.objects.create_user(username="ann", password=PASSWORD, is_staff=True)
    grant_role(user, "manager")
    return user


def attempt(path, username, password, ip="10.0.0.1"):
    return Client(REMOTE_ADDR=ip).post(path, {"username": username, "password": password})


@override_settings(WINNOW_LOGIN_FAILURE_LIMIT=3)
@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_repeated_failed_sign_ins_are_refused(person, path):
    assert attempt(path, "ann", PASSWORD).status_code == 302  # fine before any failure
    for _ in range(3):
        assert attempt(path, "ann", "guess").status_code == 200  # the form again, with an error
    blocked = attempt(path, "ann", PASSWORD)
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 0  # even the right password
    assert attempt(path, "someone-else", "guess").status_code == 429  # the address is blocked
    assert attempt(path, "ann", PASSWORD, ip="10.0.0.2").status_code == 429  # so is the username
    assert attempt(path, "bob", "guess", ip="10.0.0.3").status_code == 200  # others are not


@override_settings(WINNOW_LOGIN_FAILURE_LIMIT=3, WINNOW_LOGIN_FAILURE_WINDOW_SECONDS=3)
def test_the_block_lifts_when_the_window_has_passed(person):
    import time

    for _ in range(3):
        attempt("/login/", "ann", "guess")
    assert attempt("/login/", "ann", PASSWORD).status_code == 429
    time.sleep(3.5)
    assert attempt("/login/", "ann", PASSWORD).status_code == 302


@override_settings(WINNOW_LOGIN_FAILURE_LIMIT=3)
def test_look_alike_usernames_count_as_the_same_username(person):
    for n, name in enumerate(["ａｎｎ", "ANN", " ann"]):  # full-width, upper case, padded: one name
        assert attempt("/login/", name, "guess", ip=f"10.1.0.{n}").status_code == 200
    assert attempt("/login/", "ann", PASSWORD, ip="10.1.0.9").status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_counts(person, settings):
    settings.WINNOW_LOGIN_FAILURE_LIMIT = 3
    settings.WINNOW_TRUSTED_PROXIES = 1

    def via_proxy(client_ip, claimed="", username="x"):
        forwarded = ", ".join(part for part in (claimed, client_ip) if part)
        return Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded).post(
            "/login/", {"username": username, "password": "guess"})

    for n in range(3):  # one client, whatever it claims further left, behind the one proxy
        assert via_proxy("203.0.113.5", claimed=f"198.51.100.{n}", username=f"u{n}").status_code == 200
    assert via_proxy("203.0.113.5", username="fresh").status_code == 429
    assert via_proxy("203.0.113.6", username="fresh").status_code == 200  # others behind the proxy are not blocked


# -- production settings -------------------------------------------------------------------------

def deploy_check(tmp_path, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WINNOW_")}
    environment.update(WINNOW_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="winnow.settings", **env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_production_settings_pass_check_deploy(tmp_path):
    done = deploy_check(tmp_path, WINNOW_HTTPS="1", WINNOW_SECRET_KEY=secrets.token_urlsafe(50),
                        WINNOW_ALLOWED_HOSTS="winnow.example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    # The embedded default (plain HTTP on loopback) is not production, and the check says so.
    embedded = deploy_check(tmp_path)
    assert embedded.returncode != 0 and "security.W004" in embedded.stderr + embedded.stdout
    # HTTPS with the built-in development key is refused outright.
    refused = deploy_check(tmp_path, WINNOW_HTTPS="1")
    assert refused.returncode != 0 and "WINNOW_SECRET_KEY" in refused.stderr

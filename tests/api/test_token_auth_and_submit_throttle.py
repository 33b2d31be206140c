"""winnow.auth (the token, its user and the role in one query) and the submission throttle's
counter in the database (winnow.throttles.take_turn)."""

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from winnow.models import RateLimit
from winnow.roles import grant_role
from winnow.throttles import take_turn

from ..conftest import token_client


def test_the_role_comes_with_the_token(users):
    for role in ("admin", "manager", "annotator"):
        client = token_client(users[role])
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/v1/datasets")
        assert response.status_code == 200, (role, response.content)
        assert not any(q["sql"].lstrip().startswith('SELECT "auth_group"') for q in queries.captured_queries)
    assert token_client(users["norole"]).get("/api/v1/datasets").status_code == 403


def test_a_manager_in_both_groups_is_a_manager(users):
    user = users["annotator"]
    grant_role(user, "manager")
    response = token_client(user).post("/api/v1/datasets", {"name": "mine"}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("header", ["Token nope", "Token a\x00b", "Token ", "Token a b"])
def test_bad_tokens_are_401(users, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/datasets")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_an_inactive_user_is_401(users):
    user = users["manager"]
    client = token_client(user)
    user.is_active = False
    user.save()
    response = client.get("/api/v1/datasets")
    assert response.status_code == 401 and "inactive" in response.json()["detail"]


def test_request_auth_is_the_token_row(users):
    from winnow.auth import TokenAuthentication

    token = Token.objects.get_or_create(user=users["annotator"])[0]
    user, got = TokenAuthentication().authenticate_credentials(token.key)
    assert got == token and got.user is user and got.created == token.created
    assert user == users["annotator"] and user.username == "annotator-user" and user.check_password("pw-for-tests-1")
    assert user._winnow_role == "annotator"


def test_take_turn_allows_a_burst_then_the_steady_rate(db):
    # 3 per 60 s: 3 at once, then one every 20 s
    assert [take_turn("k", 3, 60, 1000.0) for _ in range(3)] == [0, 0, 0]
    assert take_turn("k", 3, 60, 1000.0) == pytest.approx(20.0)
    assert take_turn("k", 3, 60, 1010.0) == pytest.approx(10.0)  # refused: counts nothing
    assert take_turn("k", 3, 60, 1020.0) == 0
    assert take_turn("k", 3, 60, 1021.0) == pytest.approx(19.0)
    assert take_turn("other", 3, 60, 1021.0) == 0  # per key
    assert take_turn("k", 3, 60, 5000.0) == 0  # long idle: a full burst again
    assert [take_turn("k", 3, 60, 5000.0) for _ in range(3)] == [0, 0, pytest.approx(20.0)]
    assert take_turn("z", 0, 60, 1.0) == 60  # a zero rate refuses everything
    assert RateLimit.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_take_turn_lets_no_more_through_under_concurrency():
    """Threads with their own connections race for one key: exactly the burst gets through."""
    allowed, start = [], threading.Barrier(6)

    def race():
        try:
            start.wait()
            allowed.extend(1 for _ in range(10) if take_turn("shared", 20, 3600, 1000.0) == 0)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(allowed) == 20

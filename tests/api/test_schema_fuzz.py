"""Schemathesis against Winnow's own OpenAPI schema, over real HTTP, authenticated as admin.

Every operation in the schema gets generated requests, valid and invalid; none may answer
with a server error or with a body that breaks the schema the API publishes.
"""

import json

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from corpus.models import Dataset, Feedback, Record, Response

pytestmark = pytest.mark.slow


@pytest.fixture
def admin_headers(transactional_db, users):
    token, _ = Token.objects.get_or_create(user=users["admin"])
    return {"Authorization": f"Token {token.key}"}


@pytest.fixture
def api_url(live_server, admin_headers):
    # Something for the id-taking operations to find: ids 1..3 exist in most tables.
    dataset = Dataset.objects.create(name="fuzz", owner=None)
    for n in range(3):
        record = Record.objects.create(dataset=dataset, prompt=f"prompt {n}", external_id=f"e{n}")
        a = Response.objects.create(record=record, text="a", author_kind="model")
        b = Response.objects.create(record=record, text="b", author_kind="human")
        Feedback.objects.create(record=record, kind="pairwise", author_kind="human",
                                payload={"a": a.pk, "b": b.pk, "choice": "a", "strength": None,
                                         "margin": None})
    return live_server.url


def published_schema() -> dict:
    """The schema exactly as /api/schema/ serves it (generated once, at collection)."""
    generator = SchemaGenerator()
    return json.loads(OpenApiJsonRenderer().render(generator.get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(published_schema())


@schema.parametrize()
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_server_error_and_no_response_that_breaks_the_schema(case, api_url, admin_headers):
    case.call_and_validate(
        base_url=api_url, headers=admin_headers,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )

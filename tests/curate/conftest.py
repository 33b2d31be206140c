import uuid

import pytest
import redis as redis_lib

from corpus.models import AuthorKind, Dataset, Record, Response

REDIS_URL = "redis://127.0.0.1:6379/4"


@pytest.fixture
def redis_index(settings):
    """Redis database 4 with a key prefix of this test's own, removed afterwards."""
    prefix = f"winnow-test:{uuid.uuid4().hex[:10]}"
    settings.WINNOW_CURATE_REDIS_URL = REDIS_URL
    settings.WINNOW_CURATE_REDIS_PREFIX = prefix
    client = redis_lib.Redis.from_url(REDIS_URL)
    yield prefix
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def add_records(dataset: Dataset, prompts, responses=None, author_kind=AuthorKind.MODEL):
    records = [Record.objects.create(dataset=dataset, prompt=p) for p in prompts]
    for record, text in zip(records, responses or []):
        if text is not None:
            Response.objects.create(record=record, text=text, author_kind=author_kind,
                                    model_name="m" if author_kind == AuthorKind.MODEL else "")
    return records

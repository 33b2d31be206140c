"""Fixtures for training tests: a tiny model folder (built once a session) and a data dir of
the test's own, which the trainer child process is pointed at."""

import pytest

from .factories import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(autouse=True)
def _own_data_dir(settings, tmp_path):
    # Snapshots and run folders of this test only; the child gets this dir as WINNOW_DATA_DIR.
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()


@pytest.fixture
def tiny_model(db, tiny_model_dir):
    from .factories import register_tiny

    return register_tiny(tiny_model_dir)

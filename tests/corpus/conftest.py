import pytest


@pytest.fixture(autouse=True)
def _snapshot_data_dir(settings, tmp_path):
    # Snapshot.directory lives under DATA_DIR: each test gets its own.
    settings.DATA_DIR = tmp_path / "data"

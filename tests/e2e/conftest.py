"""Helpers for tests that drive real processes against the test database."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database as a DATABASE_URL a subprocess can use."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60, every: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "WINNOW_DATA_DIR": str(tmp_path / "data"),
            "WINNOW_JOB_HEARTBEAT_SECONDS": "0.5",
            "WINNOW_JOB_STALE_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, *args: str, log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.tmp_path / f"{log}.log", "ab")
        proc = subprocess.Popen(
            list(args), cwd=ROOT, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def worker(self, log: str = "worker", env: dict | None = None) -> subprocess.Popen:
        return self.start(sys.executable, "manage.py", "worker", "--queue-name", "default,training",
                          "--interval", "0.2", "--no-startup-delay", "--no-reload", log=log, env=env)

    def wait_serving(self, proc: subprocess.Popen, url: str, *, log: str, timeout: float = 120) -> None:
        """Wait until `url` answers 200; fail with the process's log if it dies first."""
        import requests

        def up():
            try:
                return requests.get(url, timeout=15).status_code == 200
            except requests.RequestException:  # refused while starting, or slow on a busy machine
                assert proc.poll() is None, self.log(log)
                return False

        wait_for(up, timeout=timeout, what=f"{url} to answer")

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _real_password_hashers(settings):
    """Servers started here check passwords with the production hashers."""
    from django.conf import global_settings

    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS


@pytest.fixture
def processes(tmp_path, transactional_db):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()

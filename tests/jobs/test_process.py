"""jobs.process: children started by a worker never outlive it, even when the worker dies
between forking a child and the child asking the kernel to follow it."""

import multiprocessing
import os
import time
from pathlib import Path

import psutil

from jobs.process import forked_child


def _child(marker: str) -> None:
    Path(marker + ".pid").write_text(str(os.getpid()))
    time.sleep(0.5)  # the process that forked this one is gone by now
    forked_child()
    Path(marker).write_text("an orphan kept running")


def _short_lived_parent(marker: str) -> None:
    multiprocessing.get_context("fork").Process(target=_child, args=(marker,)).start()
    os._exit(0)  # like a SIGKILLed worker: no clean-up, the child is reparented


def test_a_child_whose_parent_died_before_it_asked_to_follow_ends_itself(tmp_path):
    marker = str(tmp_path / "orphan")
    parent = multiprocessing.get_context("fork").Process(target=_short_lived_parent, args=(marker,))
    parent.start()
    parent.join(timeout=10)
    deadline = time.monotonic() + 10
    while not Path(marker + ".pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(Path(marker + ".pid").read_text())

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone() and not Path(marker).exists()

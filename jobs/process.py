"""Process helpers shared by the CLI supervisor and jobs that start child processes."""

import os
import signal


def die_with_parent(*, orphan_check: bool = False) -> None:
    """Ask the kernel to SIGTERM this process when its parent dies, even by SIGKILL, so no
    child outlives a killed supervisor or worker (Linux only; elsewhere a no-op).

    `orphan_check` (multiprocessing children): the request covers only a parent dying after
    it, so a parent killed between the fork and this call would leave the child running for
    ever; the child then ends itself at once. (A fault test caught a snapshot part doing that
    when the worker was SIGKILLed right after forking it.)"""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass
    if orphan_check:
        exit_if_orphaned()


def exit_if_orphaned() -> None:
    """SIGTERM this multiprocessing child if the process that started it is gone already."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os.kill(os.getpid(), signal.SIGTERM)


def forked_child() -> None:
    """Call first in a process forked from a worker (a Pool initializer, a Process target).

    The child inherits the worker's signal handlers: django_tasks_db's SIGTERM handler only
    sets a "shut down after this task" flag, so Pool.terminate() (SIGTERM) would wait forever
    for children that never exit. Here SIGTERM ends the child, SIGINT is left to the parent, and
    die_with_parent ends it if the worker is killed outright.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group: the parent decides, then terminates the children;
    # a child dying mid-task would leave Pool.imap waiting for its result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(orphan_check=True)

"""Process helpers shared by the CLI supervisor and jobs that start child processes."""

import signal


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies, even by SIGKILL, so no
    child outlives a killed supervisor or worker (Linux only; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


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
    die_with_parent()

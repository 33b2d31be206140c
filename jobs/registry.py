"""Job kinds and the handlers that run them.

An app declares a background operation by decorating a function that takes a JobContext:

    @job_handler("corpus.import", on_abandon=delete_partial_import)
    def import_file(ctx): ...

The handler reports progress through the context, persists a checkpoint with
`ctx.checkpoint()` after each durable step (in the same transaction as the step, so a resumed
attempt skips exactly the work that was committed), and raises JobFailed for a clean failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .context import JobContext
    from .models import Job


class JobCancelled(Exception):
    """Raised inside a handler when someone asked the job to stop."""


class JobFailed(Exception):
    """A failure the handler explains: the message becomes the job's error, details its result."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class JobHandler:
    kind: str
    func: Callable[["JobContext"], dict | None]
    queue: str = "default"
    # A resumable handler can run again after its worker died and skip what was committed.
    resumable: bool = True
    # Called when the job ends failed or cancelled, to undo partial work.
    on_abandon: Callable[["Job"], None] | None = None


_HANDLERS: dict[str, JobHandler] = {}


def job_handler(
    kind: str,
    *,
    queue: str = "default",
    resumable: bool = True,
    on_abandon: Callable[["Job"], None] | None = None,
):
    def register(func):
        if kind in _HANDLERS and _HANDLERS[kind].func is not func:
            raise RuntimeError(f"job kind {kind!r} is registered twice")
        _HANDLERS[kind] = JobHandler(kind, func, queue, resumable, on_abandon)
        return func

    return register


def get_handler(kind: str) -> JobHandler:
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no handler is registered for job kind {kind!r}") from None


def registered_kinds() -> list[str]:
    return sorted(_HANDLERS)

"""What a running handler sees: parameters, checkpoint state, progress, log, cancellation."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from .models import Job, JobLogEntry
from .registry import JobCancelled

logger = logging.getLogger("winnow.jobs")


class JobContext:
    def __init__(self, job: Job, *, heartbeat_seconds: float, echo=None):
        self.job = job
        self.params: dict = dict(job.params or {})
        self.state: dict = dict(job.state or {})
        self.resumed = job.attempts > 1
        self._done = job.progress_done
        self._total = job.progress_total
        self._stage = job.progress_stage
        self._flushed = (self._done, self._total, self._stage)
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._stop = threading.Event()
        self._heartbeat_seconds = heartbeat_seconds
        self._thread: threading.Thread | None = None
        # The CLI passes a callback to draw a progress bar; the worker passes none.
        self._echo = echo

    # -- what handlers call ------------------------------------------------------------------

    def progress(self, done: int, total: int | None = None, stage: str | None = None) -> None:
        """Record progress (flushed to the row about once a second) and honour cancellation."""
        with self._lock:
            self._done = done
            if total is not None:
                self._total = total
            if stage is not None:
                self._stage = stage
        if self._echo:
            self._echo(self._done, self._total, self._stage)
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise JobCancelled()

    def checkpoint(self, **state) -> None:
        """Persist checkpoint state and progress now, on the caller's connection.

        Call it inside the transaction that made the work durable: then the checkpoint and the
        work commit together, and a resumed attempt skips exactly what was committed.
        """
        self.state.update(state)
        with self._lock:
            done, total, stage = self._done, self._total, self._stage
        Job.objects.filter(pk=self.job.pk).update(
            state=self.state,
            progress_done=done,
            progress_total=total,
            progress_stage=stage,
            heartbeat_at=timezone.now(),
        )
        self._flushed = (done, total, stage)

    def final_progress(self) -> tuple[int, int | None, str]:
        with self._lock:
            return self._done, self._total, self._stage

    def log(self, message: str, level: str = JobLogEntry.Level.INFO) -> None:
        logger.log(
            logging.WARNING if level == JobLogEntry.Level.WARNING else logging.INFO,
            "job %s: %s",
            self.job.pk,
            message,
        )
        JobLogEntry.objects.create(job_id=self.job.pk, level=level, message=message)

    # -- heartbeat ---------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"job-{self.job.pk}-heartbeat", daemon=True
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self._heartbeat_seconds + 35)

    def _beat(self) -> None:
        """Runs on its own thread, hence its own DB connection, so it beats while the handler
        is busy (inside a long transaction or waiting on a child process)."""
        tick = min(1.0, self._heartbeat_seconds)
        last_beat = 0.0
        elapsed = 0.0
        try:
            while not self._stop.wait(tick):
                elapsed += tick
                with self._lock:
                    current = (self._done, self._total, self._stage)
                beat_due = elapsed - last_beat >= self._heartbeat_seconds
                if current == self._flushed and not beat_due:
                    continue
                try:
                    with transaction.atomic():
                        if connection.vendor == "postgresql":
                            # Never queue behind a lock on the job row: skip this beat instead.
                            with connection.cursor() as cursor:
                                cursor.execute("SET LOCAL lock_timeout = '2s'")
                        mine = Job.objects.filter(
                            pk=self.job.pk, status=Job.Status.RUNNING, worker=self.job.worker
                        ).update(
                            progress_done=current[0],
                            progress_total=current[1],
                            progress_stage=current[2],
                            heartbeat_at=timezone.now(),
                        )
                    if not mine:
                        # Recovered as stale, finished, or gone: this attempt no longer owns it.
                        logger.warning("job %s: no longer ours; heartbeat stops", self.job.pk)
                        self._cancelled.set()
                        return
                    self._flushed = current
                    last_beat = elapsed
                    if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                        self._cancelled.set()
                except Exception:  # a locked SQLite file or a restarting server: beat again later
                    logger.warning("job %s: heartbeat failed", self.job.pk, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

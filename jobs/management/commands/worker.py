"""`manage.py worker`: django-tasks-db's db_worker plus Winnow's stale-job recovery.

db_worker has no sweep for rows a dead worker left RUNNING. This command runs one when it
starts and then every WINNOW_JOB_STALE_SECONDS/2 on a side thread, so a job whose worker was
killed is resumed (or failed with the reason) by whichever worker notices first.
It also outlives a database outage (a PostgreSQL restart): db_worker would exit; this waits
for the database, takes back the job it was running, and goes on.
All db_worker flags work: --queue-name default,training, --batch, --max-tasks, --interval, ...
"""

import logging
import signal
import threading
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django_tasks_db.management.commands.db_worker import Command as DBWorkerCommand

from jobs.runner import recover_stale_jobs

logger = logging.getLogger("winnow.jobs")


def sweep_forever(stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            close_old_connections()
            recover_stale_jobs()
        except Exception:
            logger.exception("stale-job sweep failed; trying again in %.0f s", every)
        finally:
            connection.close()


DATABASE_DOWN = (OperationalError, InterfaceError)


def _asked_to_stop() -> bool:
    """Whether db_worker's Worker got SIGTERM/SIGINT (its handler is a bound method that clears
    `running`): then an outage must not keep the process alive."""
    handler = signal.getsignal(signal.SIGTERM)
    worker = getattr(handler, "__self__", None)
    return worker is not None and not getattr(worker, "running", True)


def wait_for_database(first: float = 0.5, most: float = 10.0) -> None:
    delay = first
    while True:
        try:
            connection.close()
            connection.ensure_connection()
            return
        except DATABASE_DOWN as exc:
            logger.warning("database unreachable (%s); trying again in %.1f s", str(exc).strip(), delay)
            time.sleep(delay)
            delay = min(delay * 2, most)


class Command(DBWorkerCommand):
    help = "Run a background worker (db_worker with stale-job recovery)"

    def handle(self, *args, **options):
        self.configure_logging(options["verbosity"])
        recovered = recover_stale_jobs()
        if recovered:
            logger.warning("recovered %d stale job(s) at start-up", len(recovered))
        stop = threading.Event()
        if not options["batch"]:
            every = max(1.0, settings.WINNOW_JOB_STALE_SECONDS / 2)
            threading.Thread(
                target=sweep_forever, args=(stop, every), name="stale-job-sweep", daemon=True
            ).start()
        try:
            while True:
                try:
                    return super().handle(*args, **options)
                except DATABASE_DOWN as exc:
                    if options["batch"] or _asked_to_stop():
                        raise
                    logger.error("lost the database (%s); waiting for it to come back", str(exc).strip())
                    self.recover_after_outage()
        finally:
            stop.set()

    @staticmethod
    def recover_after_outage() -> None:
        """Wait for the database, then take back the job this process left RUNNING (nothing runs
        now, so it was cut off). If the database drops again meanwhile, wait again."""
        time.sleep(1.0)  # not a hot loop, even for an error that is not an outage
        while True:
            wait_for_database()
            try:
                for job in recover_stale_jobs(mine=True):
                    logger.warning("job %s: taken back after the outage -> %s", job.pk, job.status)
                return
            except DATABASE_DOWN as exc:
                logger.error("the database dropped again (%s)", str(exc).strip())
                time.sleep(1.0)

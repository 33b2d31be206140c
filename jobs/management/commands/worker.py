"""`manage.py worker`: django-tasks-db's db_worker plus Winnow's stale-job recovery.

db_worker has no sweep for rows a dead worker left RUNNING. This command runs one when it
starts and then every WINNOW_JOB_STALE_SECONDS/2 on a side thread, so a job whose worker was
killed is resumed (or failed with the reason) by whichever worker notices first.
All db_worker flags work: --queue-name default,training, --batch, --max-tasks, --interval, ...
"""

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection
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
            return super().handle(*args, **options)
        finally:
            stop.set()

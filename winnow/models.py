"""Winnow-wide tables: the submission throttle's counters (winnow.throttles)."""

from django.db import models


class RateLimit(models.Model):
    """One throttle key's state (GCRA): `tat`, the theoretical arrival time (Unix seconds) of
    the key's next request at the steady rate. One row per user who has submitted; a row whose
    `tat` has passed means the same as no row. On PostgreSQL the table is UNLOGGED: no WAL, so
    a request's update is never a disk flush (after a crash the table is empty, which only
    forgets who was recently busy)."""

    key = models.CharField(max_length=200, primary_key=True)
    tat = models.FloatField()

    class Meta:
        db_table = "winnow_ratelimit"

    def __str__(self) -> str:
        return self.key

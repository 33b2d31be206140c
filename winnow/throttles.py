"""Throttling: login attempts (password guessing) and submissions (runaway scripts).

Failed logins are counted in Django's cache: a folder under WINNOW_DATA_DIR in the embedded
default (shared by its web processes), Redis where WINNOW_CACHE_URL says so (several hosts).
Submissions, a few per second per annotator, are counted in the database (winnow.models.RateLimit):
one atomic statement per request, shared by every web process on every host, where the file
cache cost a file write and a directory listing per submit.
"""

from __future__ import annotations

import hashlib
import math
import time
import unicodedata

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpResponse
from rest_framework.throttling import UserRateThrottle

# Paths whose POST is a password login (the sign-in page and the admin's).
LOGIN_PATHS = ("/login/", "/admin/login/")


class SubmitThrottle(UserRateThrottle):
    """Per-user limit on annotation submissions (WINNOW_SUBMIT_RATE, e.g. "300/min"). Read at
    request time so deployments and tests can change it without re-importing DRF's settings.

    N/period allows a burst of N, then one request every period/N (the generic cell rate
    algorithm): over any long stretch at most N per period, as DRF's throttles, kept as one
    number per user in the database instead of a list of timestamps in the cache."""

    scope = "submit"

    def get_rate(self):
        return settings.WINNOW_SUBMIT_RATE

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.wait_seconds = take_turn(self.key, self.num_requests, self.duration, self.timer())
        return self.wait_seconds == 0

    def wait(self):
        return self.wait_seconds


def _take_turn_sql(vendor: str) -> tuple[str, str]:
    from .models import RateLimit
    from .sqlrows import column, table

    key, tat = column(RateLimit, "key"), column(RateLimit, "tat")
    # The key's next turn: its stored time, or now if that has passed.
    turn = f"(CASE WHEN r.{tat} > %s THEN r.{tat} ELSE %s END)"
    take = (f"INSERT INTO {table(RateLimit)} AS r ({key}, {tat}) VALUES (%s, %s)"
            f" ON CONFLICT ({key}) DO UPDATE SET {tat} = {turn} + %s WHERE {turn} <= %s RETURNING {tat}")
    peek = f"SELECT {tat} FROM {table(RateLimit)} WHERE {key} = %s"
    return take, peek


_statements: dict[str, tuple[str, str]] = {}


def take_turn(key: str, limit: int, period: float, now: float) -> float:
    """Counts a request for `key` if `limit` per `period` allows it and returns 0; otherwise
    counts nothing and returns the seconds until one would be allowed. One atomic statement
    (an upsert that only updates when the key's turn has come), so concurrent requests from
    several processes never let more through."""
    from .sqlrows import db, fetch_one

    if limit <= 0:
        return float(period)
    vendor = db().vendor
    if vendor not in _statements:
        _statements[vendor] = _take_turn_sql(vendor)
    take, peek = _statements[vendor]
    interval = period / limit       # one request per interval at the steady rate
    tolerance = period - interval   # how far ahead of it a burst may run: `limit` at once
    if fetch_one(take, [key, now + interval, now, now, interval, now, now, now + tolerance]) is not None:
        return 0
    row = fetch_one(peek, [key])
    return max(row[0] - now - tolerance, 0.001) if row else interval


def _client_ip(request) -> str:
    """The address a sign-in came from. Behind WINNOW_TRUSTED_PROXIES reverse proxies it is the
    X-Forwarded-For entry the nearest proxy appended (entries further left are whatever the
    client sent, so never trusted); otherwise REMOTE_ADDR, which behind a proxy would be the
    proxy's own address for everyone."""
    hops = settings.WINNOW_TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _keys(ip: str, username: str) -> list[str]:
    # Normalised as Django's login form does (NFKC), so "ａｄｍｉｎ" counts against "admin".
    name = unicodedata.normalize("NFKC", username).strip().casefold()
    user = hashlib.sha256(name.encode()).hexdigest()[:32]
    return [f"winnow:login-fail:ip:{ip}", f"winnow:login-fail:user:{user}"]


def _window() -> int:
    return settings.WINNOW_LOGIN_FAILURE_WINDOW_SECONDS


@receiver(user_login_failed)
def count_failed_login(sender, credentials, request=None, **kwargs):
    """Every failed password check (sign-in page, admin, API) counts against the address it came
    from and the username it tried, in a window that starts at the first failure. Stored as
    (count, window end) and rewritten with the time left: cache.incr would restart the expiry
    on some backends (the file cache), stretching the window with every failure."""
    if request is None:
        return
    now = time.time()
    for key in _keys(_client_ip(request), str(credentials.get("username", ""))):
        count, until = cache.get(key) or (0, now + _window())
        if until <= now:
            count, until = 0, now + _window()
        cache.set(key, (count + 1, until), timeout=max(1, math.ceil(until - now)))


def login_blocked(request) -> int:
    """Seconds until this sign-in may be tried again (0: now)."""
    limit, now = settings.WINNOW_LOGIN_FAILURE_LIMIT, time.time()
    keys = _keys(_client_ip(request), request.POST.get("username", ""))
    waits = [until - now for count, until in cache.get_many(keys).values() if count >= limit and until > now]
    return math.ceil(max(waits)) if waits else 0


class LoginThrottleMiddleware:
    """Refuses login POSTs with 429 once an address or a username has failed
    WINNOW_LOGIN_FAILURE_LIMIT times within WINNOW_LOGIN_FAILURE_WINDOW_SECONDS. The block
    lifts when the window since the first failure has passed; a success does not reset it, so a
    guesser cannot interleave a known good login to keep going."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        wait = login_blocked(request) if request.method == "POST" and request.path in LOGIN_PATHS else 0
        if wait:
            response = HttpResponse(
                f"Too many failed sign-in attempts. Try again in {math.ceil(wait / 60)} minute(s).\n",
                status=429, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(wait)
            return response
        return self.get_response(request)

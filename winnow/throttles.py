"""Throttling: login attempts (password guessing) and submissions (runaway scripts).

Counts live in Django's cache: a folder under WINNOW_DATA_DIR in the embedded default (shared
by its web processes), Redis where WINNOW_CACHE_URL says so (several hosts).
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
    request time so deployments and tests can change it without re-importing DRF's settings."""

    scope = "submit"

    def get_rate(self):
        return settings.WINNOW_SUBMIT_RATE


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

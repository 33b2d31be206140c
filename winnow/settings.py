"""Django settings for Winnow.

The embedded default needs no configuration: a SQLite file and uploads under WINNOW_DATA_DIR
(./var), one DB-backed worker. Scale-out is configured from the environment:
DATABASE_URL (PostgreSQL), WINNOW_SECRET_KEY, WINNOW_ALLOWED_HOSTS, WINNOW_DEBUG.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("WINNOW_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# Local model folders (the converted bundled model, registered and trained models). Kept apart
# from DATA_DIR so tests and throwaway data dirs share one converted copy of the bundled model.
MODELS_DIR = Path(os.environ.get("WINNOW_MODELS_DIR", BASE_DIR / "var" / "models")).resolve()


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


DEBUG = _env_bool("WINNOW_DEBUG", False)
# The embedded default only listens on loopback, so a fixed development key is acceptable there;
# any deployment sets WINNOW_SECRET_KEY (docker/compose.yaml does).
EMBEDDED_SECRET_KEY = "winnow-embedded-default-insecure-key"
SECRET_KEY = os.environ.get("WINNOW_SECRET_KEY", EMBEDDED_SECRET_KEY)

# Production behind TLS (a reverse proxy that sets X-Forwarded-Proto): WINNOW_HTTPS=1 turns on
# HTTPS redirects, secure cookies and HSTS; with it, `manage.py check --deploy` is clean.
HTTPS = _env_bool("WINNOW_HTTPS", False)
if HTTPS:
    if SECRET_KEY in (EMBEDDED_SECRET_KEY, "change-me-in-production") or len(SECRET_KEY) < 50:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("WINNOW_HTTPS=1 needs a WINNOW_SECRET_KEY of its own, 50+ characters "
                                   "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')")
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = _env_int("WINNOW_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("WINNOW_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("WINNOW_HSTS_PRELOAD", True)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
ALLOWED_HOSTS = os.environ.get("WINNOW_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [
    origin for origin in os.environ.get("WINNOW_CSRF_TRUSTED_ORIGINS", "").split(",") if origin
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks",
    "django_tasks_db",
    "winnow",
    "jobs",
    "corpus",
    "synth",
    "curate",
    "annotate",
    "training",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "winnow.throttles.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "winnow.urls"
WSGI_APPLICATION = "winnow.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

SQLITE_PATH = DATA_DIR / "winnow.sqlite3"
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}", conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # The web server and the worker write to one file: WAL lets readers run beside the
        # writer, IMMEDIATE takes the write lock at BEGIN so two writers queue up instead of
        # deadlocking on a lock upgrade, and the timeout is how long they queue.
        # A 32 MB page cache (default 2 MB) keeps index pages hot during bulk imports, and a
        # 10,000-page (~40 MB) WAL checkpoints hot index pages once instead of every batch:
        # measured 27% off insert+commit time for a 200k-row import.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
        "PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=10000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests run the real worker in a subprocess, which cannot see an in-memory database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("WINNOW_TEST_SQLITE", str(DATA_DIR / "test-winnow.sqlite3"))
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Throttle counters (winnow.throttles) and DRF throttles live in the cache: files under DATA_DIR
# in the embedded default (shared by its gunicorn processes), Redis when several hosts serve.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                      "LOCATION": str(DATA_DIR / "cache"), "OPTIONS": {"MAX_ENTRIES": 50_000}}}
if os.environ.get("WINNOW_CACHE_URL"):
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                         "LOCATION": os.environ["WINNOW_CACHE_URL"], "KEY_PREFIX": "winnow"}
# Failed sign-ins from one address or for one username before login is refused (429) until the
# window since the first failure has passed.
WINNOW_LOGIN_FAILURE_LIMIT = _env_int("WINNOW_LOGIN_FAILURE_LIMIT", 10)
WINNOW_LOGIN_FAILURE_WINDOW_SECONDS = _env_int("WINNOW_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)
# Reverse proxies in front of the web server that append to X-Forwarded-For (0: none, so the
# client address is REMOTE_ADDR). Behind one TLS proxy: 1.
WINNOW_TRUSTED_PROXIES = _env_int("WINNOW_TRUSTED_PROXIES", 0)
# Annotation submissions per user (DRF rate syntax): far above a person's pace, a brake on a
# runaway script.
WINNOW_SUBMIT_RATE = os.environ.get("WINNOW_SUBMIT_RATE", "300/min")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps in the embedded default: no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's token authentication, reading the user's role in the same query (winnow.auth)
        "winnow.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["winnow.roles.HasRole"],
    "DEFAULT_PAGINATION_CLASS": "winnow.api.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "winnow.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Winnow API",
    "DESCRIPTION": "Datasets, records, responses, feedback, imports and jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CurationStatusEnum": "corpus.models.CurationStatus",
        "AuthorKindEnum": "corpus.models.AuthorKind",
        "RecordKindEnum": "corpus.models.Record.Kind",
        "FeedbackKindEnum": "corpus.models.Feedback.Kind",
        "JobStatusEnum": "jobs.models.Job.Status",
    },
}

# Background jobs: the Django tasks API on the DB-backed queue. Training gets a queue of its
# own so GPU hosts can run `manage.py worker --queue-name training` and take only those.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "training"],
    }
}
WINNOW_JOB_HEARTBEAT_SECONDS = float(os.environ.get("WINNOW_JOB_HEARTBEAT_SECONDS", "5"))
# A RUNNING job whose heartbeat is older than this is taken to have lost its worker.
WINNOW_JOB_STALE_SECONDS = float(os.environ.get("WINNOW_JOB_STALE_SECONDS", "60"))
WINNOW_JOB_MAX_ATTEMPTS = _env_int("WINNOW_JOB_MAX_ATTEMPTS", 3)

# Imports
WINNOW_MAX_UPLOAD_BYTES = _env_int("WINNOW_MAX_UPLOAD_BYTES", 2 * 1024**3)
# Rows per import transaction: 2,000 measured 10-20% faster than 5,000 on SQLite (docs/import.md).
WINNOW_IMPORT_BATCH_SIZE = _env_int("WINNOW_IMPORT_BATCH_SIZE", 2000)
# Files from this size up are parsed in a child process, beside the database writes.
WINNOW_IMPORT_PARALLEL_BYTES = _env_int("WINNOW_IMPORT_PARALLEL_BYTES", 8 * 1024**2)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024**2
FILE_UPLOAD_TEMP_DIR = None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WINNOW_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# corpus snapshots (issue 6). The Snapshot enums' names in the API schema:
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update({
    "SnapshotKindEnum": "corpus.models.Snapshot.Kind",
})
# Snapshot builds of this many records or more are read and built by this many processes.
WINNOW_SNAPSHOT_WORKERS = _env_int("WINNOW_SNAPSHOT_WORKERS", min(2, os.cpu_count() or 1))
WINNOW_SNAPSHOT_PARALLEL_MIN_RECORDS = _env_int("WINNOW_SNAPSHOT_PARALLEL_MIN_RECORDS", 100_000)
# Curation (curate/): where the shared near-duplicate index lives when a step asks for
# `"index": "redis"`, and the key prefix of its tables (tests use their own prefix and db).
WINNOW_CURATE_REDIS_URL = os.environ.get("WINNOW_CURATE_REDIS_URL", "redis://127.0.0.1:6379/0")
WINNOW_CURATE_REDIS_PREFIX = os.environ.get("WINNOW_CURATE_REDIS_PREFIX", "winnow:lsh")
# PII detection worker processes (spaCy NER runs in each); 0 = one per CPU core.
WINNOW_CURATE_PII_PROCESSES = _env_int("WINNOW_CURATE_PII_PROCESSES", 0)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update({
    "CurationRunStatusEnum": "curate.models.CurationRun.Status",
    "PIIReviewStatusEnum": "curate.models.PIIFinding.Review",
    "CurationActionEnum": "curate.models.CurationDecision.Action",
})
# annotate: persistent database connections for busy deployments (the annotation queue makes
# many short requests; a new PostgreSQL connection per request costs more than the query).
# Off by default, as before; e.g. WINNOW_DB_CONN_MAX_AGE=60 under gunicorn.
if os.environ.get("WINNOW_DB_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = _env_int("WINNOW_DB_CONN_MAX_AGE", 0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# -- synth (issue 3): generation providers and the local model server ----------------------------
# `winnow run` serves the bundled model here (loopback only) as the "local" provider.
WINNOW_LOCAL_LLM_HOST = os.environ.get("WINNOW_LOCAL_LLM_HOST", "127.0.0.1")
WINNOW_LOCAL_LLM_PORT = _env_int("WINNOW_LOCAL_LLM_PORT", 8011)
# Requests in flight to a local `transformers serve`: continuous batching gains up to ~8.
WINNOW_LOCAL_LLM_CONCURRENCY = _env_int("WINNOW_LOCAL_LLM_CONCURRENCY", 8)
WINNOW_LOCAL_LLM_TIMEOUT = float(os.environ.get("WINNOW_LOCAL_LLM_TIMEOUT", "300"))
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["TrainingMethodEnum"] = "training.models.TrainingRun.Method"
# Training (training/, issue 7). WINNOW_TRAINING_CUDA=1|0 overrides CUDA detection where the web
# host has no GPU but its training workers do (QLoRA and fp16 are refused without CUDA).
WINNOW_TRAINING_CUDA = (
    _env_bool("WINNOW_TRAINING_CUDA", False) if os.environ.get("WINNOW_TRAINING_CUDA") else None
)

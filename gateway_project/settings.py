"""Settings of the gateway, read from the environment (see .env.example for every variable).

Embedded default: SQLite in GATEWAY_DATA_DIR, in-process cache, a filesystem Celery broker.
Production: DATABASE_URL (PostgreSQL), REDIS_URL (cache, shared state, Celery broker).
A bad value stops start-up with the variable's name (gateway_project.envparse).
"""

from __future__ import annotations

import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway_project.envparse import (
    EnvironmentValueError,
    EnvReader,
    generate_django_secret,
    generate_fernet_key,
    install_bad_environment_hook,
    parse_fernet_keys,
)

# Whatever process imports these settings (a Celery worker, a web server), a bad value below ends
# it with one line naming the variable rather than a traceback.
install_bad_environment_hook()

BASE_DIR = Path(__file__).resolve().parent.parent

env = EnvReader()

DEBUG: bool = env.bool("DEBUG", False)
GATEWAY_DATA_DIR = Path(env.str("GATEWAY_DATA_DIR", str(BASE_DIR / "data"))).resolve()
GATEWAY_DATA_DIR.mkdir(parents=True, exist_ok=True)

# Missing secrets are generated into the data directory only for local use (DEBUG on).
_generate_secrets = DEBUG

SECRET_KEY = env.secret(
    "SECRET_KEY",
    generate=generate_django_secret if _generate_secrets else None,
    data_dir=GATEWAY_DATA_DIR,
)
GATEWAY_ENCRYPTION_KEYS: list[str] = parse_fernet_keys(
    "GATEWAY_ENCRYPTION_KEYS",
    env.secret(
        "GATEWAY_ENCRYPTION_KEYS",
        generate=generate_fernet_key if _generate_secrets else None,
        data_dir=GATEWAY_DATA_DIR,
    ),
)
GATEWAY_KEY_HASH_SECRET = env.secret(
    "GATEWAY_KEY_HASH_SECRET",
    generate=generate_django_secret if _generate_secrets else None,
    data_dir=GATEWAY_DATA_DIR,
)

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # its bundled Swagger UI static files: the API docs load nothing from a CDN
    "axes",  # admin login lockout after repeated failures
    "gateway_project",
    "accounts",
    "proxy",
    "usage",
    "requestlog",
    "governance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "gateway_project.middleware.single_valued_query",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
WSGI_APPLICATION = "gateway_project.wsgi.application"
ASGI_APPLICATION = "gateway_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{GATEWAY_DATA_DIR / 'gateway.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's psycopg pool replaces persistent connections, which leak under ASGI (each
    # request may run its ORM calls on a different thread).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("GATEWAY_DB_POOL_MIN_SIZE", 1, minimum=0),
        "max_size": env.int("GATEWAY_DB_POOL_MAX_SIZE", 10, minimum=1),
        "timeout": env.float("GATEWAY_DB_POOL_TIMEOUT", 10.0, minimum=0.1),
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share the file: WAL lets readers and one writer
    # proceed together, IMMEDIATE transactions avoid upgrade deadlocks, and the timeout waits
    # out a short write instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache and shared state -----------------------------------------------------------------
REDIS_URL: str | None = env.url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gateway",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL: str = env.url(
    "CELERY_BROKER_URL",
    REDIS_URL or "filesystem://",
    schemes=("redis", "rediss", "amqp", "filesystem", "memory", "sqla+sqlite"),
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: queues are files in the data directory, so the web process, the
    # worker and beat share them without any server.
    _broker_dir = GATEWAY_DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Without it, kombu writes its broadcast exchanges into ./control of the current dir.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(GATEWAY_DATA_DIR / "celerybeat-schedule")

# --- Security -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Admin messages carry freshly created access keys; the cookie store keeps them out of the
# session table (the database never sees a plaintext key) and drops them once shown.
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# Admin login lockout (django-axes): after this many wrong passwords for one account from one
# client address, that pair is refused (429, even with the right password) for the cool-off;
# 0 minutes: until an operator unlocks it (delete the attempt in the admin, or
# `manage.py axes_reset`). The address is the one the bad-key throttle uses (trusted proxies).
AUTHENTICATION_BACKENDS = [
    "gateway_project.authbackends.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT: int = env.int("GATEWAY_ADMIN_LOGIN_FAILURE_LIMIT", 10, minimum=1)
_admin_login_cooloff_minutes: float = env.float(
    "GATEWAY_ADMIN_LOGIN_COOLOFF_MINUTES", 30.0, minimum=0
)
# A float is hours to django-axes; None locks until reset.
AXES_COOLOFF_TIME: float | None = _admin_login_cooloff_minutes / 60 or None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The admin login form's field is "username" whatever the user model's login field is.
AXES_USERNAME_FORM_FIELD = "username"
AXES_CLIENT_IP_CALLABLE = "gateway_project.access.client_ip"
AXES_RESET_ON_SUCCESS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = GATEWAY_DATA_DIR / "static"
# The admin's few static files are served by the gateway itself (collected at start), so the
# embedded set-up needs no other web server; put a CDN or reverse proxy in front to turn it off.
GATEWAY_SERVE_STATIC: bool = env.bool("GATEWAY_SERVE_STATIC", True)

# --- Gateway --------------------------------------------------------------------------------
GATEWAY_ANTHROPIC_BASE_URL: str = env.url(
    "GATEWAY_ANTHROPIC_BASE_URL", "https://api.anthropic.com", schemes=("http", "https")
)
GATEWAY_BEDROCK_ENDPOINT_URL: str = env.url(
    "GATEWAY_BEDROCK_ENDPOINT_URL",
    "https://bedrock-runtime.{region}.amazonaws.com",
    schemes=("http", "https"),
)
GATEWAY_OPENAI_BASE_URL: str = env.url(
    "GATEWAY_OPENAI_BASE_URL", "https://api.openai.com", schemes=("http", "https")
)
GATEWAY_GEMINI_BASE_URL: str = env.url(
    "GATEWAY_GEMINI_BASE_URL",
    "https://generativelanguage.googleapis.com",
    schemes=("http", "https"),
)
GATEWAY_OLLAMA_BASE_URL: str = env.url(
    "GATEWAY_OLLAMA_BASE_URL", "http://127.0.0.1:11434", schemes=("http", "https")
)
# max_tokens for a translated request whose client set none (OpenAI clients may omit it;
# Anthropic requires it).
GATEWAY_DEFAULT_MAX_TOKENS: int = env.int("GATEWAY_DEFAULT_MAX_TOKENS", 8192, minimum=1)
# URL images translated for an upstream that needs the bytes: largest size and longest fetch.
GATEWAY_IMAGE_FETCH_MAX_BYTES: int = env.int(
    "GATEWAY_IMAGE_FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=1024
)
GATEWAY_IMAGE_FETCH_TIMEOUT: float = env.float("GATEWAY_IMAGE_FETCH_TIMEOUT", 10.0, minimum=0.1)
# The connection pool of the upstream client: aiohttp's (fast under load) or httpx's own.
GATEWAY_UPSTREAM_TRANSPORT: str = env.choice(
    "GATEWAY_UPSTREAM_TRANSPORT", "aiohttp", choices=("aiohttp", "httpx")
)
GATEWAY_UPSTREAM_CONNECT_TIMEOUT: float = env.float(
    "GATEWAY_UPSTREAM_CONNECT_TIMEOUT", 5.0, minimum=0.1
)
# Streaming responses send their headers within a second or two, so a short wait is enough to
# decide that Anthropic is stuck; a non-streaming answer arrives only once it is complete.
GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT: float = env.float(
    "GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT", 15.0, minimum=0.1
)
GATEWAY_ANTHROPIC_NONSTREAM_TIMEOUT: float = env.float(
    "GATEWAY_ANTHROPIC_NONSTREAM_TIMEOUT", 600.0, minimum=1.0
)
GATEWAY_UPSTREAM_READ_TIMEOUT: float = env.float("GATEWAY_UPSTREAM_READ_TIMEOUT", 600.0, minimum=1)
# A client that takes no byte of its answer for this long has its stream closed (its upstream
# request too, with the usage so far recorded).
GATEWAY_CLIENT_WRITE_TIMEOUT: float = env.float("GATEWAY_CLIENT_WRITE_TIMEOUT", 120.0, minimum=0.1)
GATEWAY_MAX_BODY_BYTES: int = env.int("GATEWAY_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
# Reading a larger body raises RequestDataTooBig, which the proxy answers with a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES
GATEWAY_KEY_CACHE_TTL: float = env.float("GATEWAY_KEY_CACHE_TTL", 30.0, minimum=0)
# Budgets: calendar days, weeks and months in this IANA time zone.
GATEWAY_BUDGET_TIME_ZONE: str = env.str("GATEWAY_BUDGET_TIME_ZONE", "UTC")
try:
    ZoneInfo(GATEWAY_BUDGET_TIME_ZONE)
except (ValueError, ZoneInfoNotFoundError):
    raise EnvironmentValueError(
        f"GATEWAY_BUDGET_TIME_ZONE: unknown time zone {GATEWAY_BUDGET_TIME_ZONE!r}"
    ) from None
# A concurrency slot or budget reservation whose request never reported back (its worker died)
# is freed after this many seconds; longer than any request lasts.
GATEWAY_GOVERNANCE_SLOT_SECONDS: float = env.float(
    "GATEWAY_GOVERNANCE_SLOT_SECONDS", 3600.0, minimum=1
)
GATEWAY_KEY_ROTATION_GRACE_HOURS: float = env.float(
    "GATEWAY_KEY_ROTATION_GRACE_HOURS", 24.0, minimum=0
)
# A requested model missing from the model map (and without a credential fallback model) is
# answered by the newest mapped model of its family (opus/sonnet/haiku).
GATEWAY_FALLBACK_SAME_FAMILY: bool = env.bool("GATEWAY_FALLBACK_SAME_FAMILY", True)
# Circuit breaker: this many retryable Anthropic failures within the window open the circuit
# for the cool-down (or until the time a 429 names); then one probe request decides.
GATEWAY_CIRCUIT_FAILURE_THRESHOLD: int = env.int("GATEWAY_CIRCUIT_FAILURE_THRESHOLD", 5, minimum=1)
GATEWAY_CIRCUIT_WINDOW_SECONDS: float = env.float("GATEWAY_CIRCUIT_WINDOW_SECONDS", 30.0, minimum=1)
GATEWAY_CIRCUIT_COOLDOWN_SECONDS: float = env.float(
    "GATEWAY_CIRCUIT_COOLDOWN_SECONDS", 30.0, minimum=1
)
GATEWAY_CIRCUIT_MAX_OPEN_SECONDS: float = env.float(
    "GATEWAY_CIRCUIT_MAX_OPEN_SECONDS", 3600.0, minimum=1
)
# Key pools: how long a rate-limited key rests when the provider names no time (at most
# GATEWAY_CIRCUIT_MAX_OPEN_SECONDS when it does).
GATEWAY_POOL_COOLDOWN_SECONDS: float = env.float("GATEWAY_POOL_COOLDOWN_SECONDS", 30.0, minimum=1)
GATEWAY_USAGE_RETENTION_DAYS: int = env.int("GATEWAY_USAGE_RETENTION_DAYS", 90, minimum=1)
# Request logs (requestlog): the installation's level (users and keys may have their own),
# how long bodies are kept, their size caps, and extra redaction patterns (regular expressions).
GATEWAY_REQUEST_LOG_LEVEL: str = env.choice(
    "GATEWAY_REQUEST_LOG_LEVEL", "metadata", choices=("off", "metadata", "full")
)
GATEWAY_LOG_BODY_RETENTION_DAYS: int = env.int("GATEWAY_LOG_BODY_RETENTION_DAYS", 14, minimum=1)
GATEWAY_LOG_BODY_MAX_BYTES: int = env.int("GATEWAY_LOG_BODY_MAX_BYTES", 1024 * 1024, minimum=1024)
GATEWAY_LOG_STREAM_MAX_BYTES: int = env.int(
    "GATEWAY_LOG_STREAM_MAX_BYTES", 256 * 1024, minimum=1024
)
GATEWAY_LOG_REDACT_PATTERNS: list[str] = env.list("GATEWAY_LOG_REDACT_PATTERNS", [])
# Media of logged bodies (images, audio, documents): files under GATEWAY_DATA_DIR/media, or an
# S3-compatible bucket through django-storages. Without an access key, boto3 finds credentials
# its own way (instance or task role, AWS_* variables).
GATEWAY_MEDIA_STORAGE: str = env.choice(
    "GATEWAY_MEDIA_STORAGE", "filesystem", choices=("filesystem", "s3")
)
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if GATEWAY_MEDIA_STORAGE == "s3":
    _s3_addressing: str = env.choice(
        "GATEWAY_MEDIA_S3_ADDRESSING_STYLE", "auto", choices=("auto", "path", "virtual")
    )
    # The requestlog app looks this alias up (requestlog.media); absent, it uses the data dir.
    STORAGES["requestlog_media"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("GATEWAY_MEDIA_S3_BUCKET"),
            "location": env.str("GATEWAY_MEDIA_S3_PREFIX", "").strip("/"),
            "endpoint_url": env.url(
                "GATEWAY_MEDIA_S3_ENDPOINT_URL", None, schemes=("http", "https")
            ),
            "region_name": env.str("GATEWAY_MEDIA_S3_REGION", None),
            "access_key": env.str("GATEWAY_MEDIA_S3_ACCESS_KEY_ID", None),
            # Optional, like the key id; when given, NAME_FILE works as for the other secrets.
            "secret_key": (
                env.secret(
                    "GATEWAY_MEDIA_S3_SECRET_ACCESS_KEY", generate=None, data_dir=GATEWAY_DATA_DIR
                )
                if env.is_set("GATEWAY_MEDIA_S3_SECRET_ACCESS_KEY")
                or env.is_set("GATEWAY_MEDIA_S3_SECRET_ACCESS_KEY_FILE")
                else None
            ),
            "addressing_style": None if _s3_addressing == "auto" else _s3_addressing,
            # Objects are private and never linked to: staff get them through /media/<hash>.
            "default_acl": None,
            # Content-addressed: the same name always holds the same bytes.
            "file_overwrite": True,
        },
    }
# On a stop signal the web server finishes open requests (streams included) for this long, then
# cuts them; the usage events of all of them are written (or spooled) before the process exits.
GATEWAY_SHUTDOWN_GRACE_SECONDS: int = env.int("GATEWAY_SHUTDOWN_GRACE_SECONDS", 30, minimum=0)

# --- Logging and metrics --------------------------------------------------------------------
GATEWAY_LOG_LEVEL: str = env.str("GATEWAY_LOG_LEVEL", "INFO").upper()
# JSON lines (one object per record, with the request id) for production log pipelines; plain
# text is easier to read on a terminal.
GATEWAY_LOG_FORMAT: str = env.choice(
    "GATEWAY_LOG_FORMAT", "plain" if DEBUG else "json", choices=("json", "plain")
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "gateway_project.observability.RequestIdFilter"},
        # URLs carry access keys (/ak/<key>/..., ?key=) and admin tokens (?token=), headers
        # bearer tokens: every record is masked before any handler writes it.
        "redact_keys": {"()": "gateway_project.logfilters.RedactSecretsFilter"},
        "stalled_client": {"()": "gateway_project.logfilters.StalledClientFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": sys.stderr,
            "formatter": GATEWAY_LOG_FORMAT,
            "filters": ["redact_keys", "request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": GATEWAY_LOG_LEVEL},
    "loggers": {
        # httpx logs every request URL at INFO, and proxy URLs carry access keys.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Django's default configuration gives these loggers handlers of its own (a console one
        # with DEBUG on, mail_admins, runserver's): without the masking filter, so none here;
        # their records reach the console handler through the root logger.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        # django-axes announces itself at INFO in every process, every manage.py command too.
        "axes.apps": {"level": "WARNING"},
        # uvicorn's own loggers go through the same handler, masked and formatted like the rest.
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.error": {"handlers": [], "propagate": True, "filters": ["stalled_client"]},
        # No access log: request paths carry access keys. uvicorn's --no-access-log only empties
        # this logger's handlers before the application (and so this configuration) is loaded;
        # uvicorn logs access lines only when the logger has a handler, so it gets none here.
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}
# Email of the admin account run_gateway creates on the first start.
GATEWAY_ADMIN_EMAIL: str = env.str("GATEWAY_ADMIN_EMAIL", "admin@localhost")
# Bearer token for the admin usage API (/api/admin/...); empty: staff sessions only.
GATEWAY_ADMIN_API_TOKEN: str = env.str("GATEWAY_ADMIN_API_TOKEN", "")
# Bearer token for reading the admin API only (writes answer 403); empty: none.
GATEWAY_ADMIN_API_READONLY_TOKEN: str = env.str("GATEWAY_ADMIN_API_READONLY_TOKEN", "")
# Prometheus metrics at /metrics: with a token, for bearers of it; without, for loopback only.
GATEWAY_METRICS_TOKEN: str = env.str("GATEWAY_METRICS_TOKEN", "")
# With several web workers: an empty directory (cleared at each start, e.g. a tmpfs) where every
# worker writes its metrics, so that a scrape of any worker reports them all.
GATEWAY_METRICS_DIR: str = env.str("GATEWAY_METRICS_DIR", "")

# Repeated unusable keys from one client address: after this many within the window, further
# bad keys from that address get 429 instead of 401 (valid keys always work).
GATEWAY_AUTH_FAILURE_LIMIT: int = env.int("GATEWAY_AUTH_FAILURE_LIMIT", 20, minimum=1)
GATEWAY_AUTH_FAILURE_WINDOW_SECONDS: float = env.float(
    "GATEWAY_AUTH_FAILURE_WINDOW_SECONDS", 60.0, minimum=1
)
# Behind reverse proxies, the header carrying the client address (e.g. X-Forwarded-For), and
# how many proxies in front of the gateway append to it: the address used is the entry the
# outermost of them wrote (the right-most with one proxy), never one a client wrote itself.
# Unset: the socket's peer address.
GATEWAY_CLIENT_IP_HEADER: str = env.str("GATEWAY_CLIENT_IP_HEADER", "")
GATEWAY_TRUSTED_PROXY_HOPS: int = env.int("GATEWAY_TRUSTED_PROXY_HOPS", 1, minimum=1)

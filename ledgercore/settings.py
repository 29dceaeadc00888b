"""LedgerCore Realtime settings.

Configured only from the environment (see docs/OPERATIONS.md, "Settings"). Every default
is the embedded stack: SQLite in WAL mode, in-memory channel layer, in-process
presence and throttles. Setting DATABASE_URL and REDIS_URL switches to the
scaled stack (PostgreSQL, Redis).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS

from ledgercore import config, security
from realtime.config import redis_url_credentials

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(config.text("LEDGERCORE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# Prometheus multiprocess mode (realtime.metrics): every process of this
# deployment on this machine writes its samples here. Set before
# prometheus_client is first imported.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
# Bearer token a scrape of /metrics must present; empty: /metrics is open
# (for a port reachable only by the monitoring network).
LEDGERCORE_METRICS_TOKEN = config.text("LEDGERCORE_METRICS_TOKEN", "")

DEBUG = config.flag("DJANGO_DEBUG", False)
SECRET_KEY = config.text("DJANGO_SECRET_KEY", "")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "insecure-debug-only-key"
elif not DEBUG and not security.strong_secret(SECRET_KEY, 50):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY: missing, a known default or too short (with DJANGO_DEBUG off it must be a random "
        "value of at least 50 characters; `make` targets use this checkout's scripts/dev-secret.sh django)"
    )
ALLOWED_HOSTS = config.items("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
# Origins whose pages may open the WebSocket (a handshake with another
# Origin header is refused with 403; clients that send none, as non-browser
# clients, are not affected), use a staff session cookie and post forms to
# admin.
LEDGERCORE_ALLOWED_ORIGINS = config.items(
    "LEDGERCORE_ALLOWED_ORIGINS",
    ["http://127.0.0.1:8000", "http://localhost:8000"],
)
CSRF_TRUSTED_ORIGINS = LEDGERCORE_ALLOWED_ORIGINS
# Cross-origin HTTP API calls (django-cors-headers): only these origins, only
# under /api/. Empty: no cross-origin access.
CORS_ALLOWED_ORIGINS = config.items("LEDGERCORE_CORS_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False

# --- HTTPS and security headers -------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Served over HTTPS (in production, behind a load balancer that terminates
# TLS and sets X-Forwarded-Proto): HTTP is redirected (but the probes and
# /metrics), cookies are secure-only, and HSTS is sent.
LEDGERCORE_HTTPS = config.flag("LEDGERCORE_HTTPS", False)
if LEDGERCORE_HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    if config.flag("LEDGERCORE_TRUST_X_FORWARDED_PROTO", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = config.integer("LEDGERCORE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = config.flag("LEDGERCORE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = config.flag("LEDGERCORE_HSTS_PRELOAD", True)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_tasks_db",
    "accounts",
    "realtime",
    "credits",
    "queryengine",
    "marketdata",
    "compliance",
    "chat",
    # Project wiring last: management commands that orchestrate the apps above.
    "ledgercore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ledgercore.urls"
ASGI_APPLICATION = "ledgercore.asgi.application"
AUTH_USER_MODEL = "accounts.User"

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
            ]
        },
    }
]

# --- database -------------------------------------------------------------
DATABASES = {
    "default": config.database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets readers run while one writer commits; busy timeout
            # makes concurrent writers wait instead of failing.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        }
    )
    # Tests use a real file too, so that server threads see committed rows;
    # one per test process, so that concurrent runs do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 0)
    # A connection that broke while PostgreSQL restarted is replaced, not
    # reused; nothing waits on PostgreSQL for long: connecting gives up
    # after the connect timeout, a lock wait after the lock timeout, a
    # session idle in a transaction is ended; server processes also bound
    # every statement (realtime.apps).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", config.integer("LEDGERCORE_DB_CONNECT_TIMEOUT_SECONDS", 3, minimum=1))
    _pg_session = (
        f"-c lock_timeout={config.integer('LEDGERCORE_DB_LOCK_TIMEOUT_MS', 10_000, minimum=0)}"
        " -c idle_in_transaction_session_timeout=60000"
    )
    _pg_options["options"] = f"{_pg_options.get('options', '')} {_pg_session}".strip()
# How long the ORM thread of a server process keeps a database connection
# (realtime.ormthread; 0: Django's CONN_MAX_AGE, a connection per call).
LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS = config.integer("LEDGERCORE_ORM_CONN_MAX_AGE_SECONDS", 300, minimum=0)
# Longest statement of a server process on PostgreSQL (0: no limit).
LEDGERCORE_DB_STATEMENT_TIMEOUT_MS = config.integer("LEDGERCORE_DB_STATEMENT_TIMEOUT_MS", 30_000, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer, presence, throttles -----------------------------------
REDIS_URL = config.redis_url("REDIS_URL")
# Redis through Sentinel: the Sentinels (host:port list) name the primary of
# LEDGERCORE_REDIS_SENTINEL_MASTER; REDIS_URL then only gives the db number
# and password (its host is not used) and may be left empty.
LEDGERCORE_REDIS_SENTINELS = config.host_ports("LEDGERCORE_REDIS_SENTINELS")
LEDGERCORE_REDIS_SENTINEL_MASTER = config.text("LEDGERCORE_REDIS_SENTINEL_MASTER", "mymaster")
if LEDGERCORE_REDIS_SENTINELS and not REDIS_URL:
    REDIS_URL = "redis:///0"
LEDGERCORE_REDIS_PREFIX = config.text("LEDGERCORE_REDIS_PREFIX", "lc")
# Connections per process for presence and throttles (the channel layer has
# its own pool); callers wait for a free one rather than fail.
LEDGERCORE_REDIS_MAX_CONNECTIONS = config.integer("LEDGERCORE_REDIS_MAX_CONNECTIONS", 50, minimum=1)
# Connect and command timeout of presence, throttles and history; past it a
# request gets UNAVAILABLE.
LEDGERCORE_REDIS_TIMEOUT_SECONDS = config.number("LEDGERCORE_REDIS_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# Longest pause between reconnection attempts while Redis does not answer
# (the backoff doubles from 0.1 s up to it).
LEDGERCORE_REDIS_RETRY_MAX_SECONDS = config.number("LEDGERCORE_REDIS_RETRY_MAX_SECONDS", 1.0, minimum=0.1)
if REDIS_URL:
    _redis_host: dict[str, object] = {
        # channels-redis waits on BZPOPMIN for 5 s; redis-py 8's default
        # 5 s read timeout would race it and kill idle connections.
        "socket_timeout": 30,
        "socket_connect_timeout": LEDGERCORE_REDIS_TIMEOUT_SECONDS,
    }
    if LEDGERCORE_REDIS_SENTINELS:
        _redis_host.update(
            sentinels=LEDGERCORE_REDIS_SENTINELS,
            master_name=LEDGERCORE_REDIS_SENTINEL_MASTER,
            sentinel_kwargs={
                "socket_timeout": LEDGERCORE_REDIS_TIMEOUT_SECONDS,
                "socket_connect_timeout": LEDGERCORE_REDIS_TIMEOUT_SECONDS,
            },
            **redis_url_credentials(REDIS_URL),
        )
    else:
        _redis_host["address"] = REDIS_URL
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's layer that survives Redis outages and failovers
            # (realtime.redis_layer).
            "BACKEND": "realtime.redis_layer.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_host],
                "prefix": f"{LEDGERCORE_REDIS_PREFIX}:asgi",
                "capacity": 1000,
                "expiry": 60,
                "retry_max": LEDGERCORE_REDIS_RETRY_MAX_SECONDS,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.EmbeddedChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60},
        }
    }

# Token buckets: capacity N refilled over the period. "connection" is charged
# for every inbound frame of a connection; the other classes are per user,
# shared by all of that user's connections (across processes on Redis).
LEDGERCORE_THROTTLE_RATES = config.rates(
    "LEDGERCORE_THROTTLE_RATES",
    {"connection": "30/s", "user": "60/s", "expensive": "20/min"},
)
LEDGERCORE_MAX_FRAME_BYTES = config.integer("LEDGERCORE_MAX_FRAME_BYTES", 65536, minimum=256)
# The transport's limit (daphne): a message over it is not read; the
# connection is closed with 1009. Between the two: validation_error.
LEDGERCORE_MAX_MESSAGE_BYTES = config.integer(
    "LEDGERCORE_MAX_MESSAGE_BYTES", max(1 << 20, LEDGERCORE_MAX_FRAME_BYTES), minimum=LEDGERCORE_MAX_FRAME_BYTES
)
# A process that has not refreshed its heartbeat for this long is considered
# dead and its connections leave their rooms (Redis stack only).
LEDGERCORE_PRESENCE_TIMEOUT_SECONDS = config.number("LEDGERCORE_PRESENCE_TIMEOUT_SECONDS", 15.0, minimum=1.0)
# Outbound buffer of one connection (realtime.backpressure): bytes and frames
# written and not yet sent (in the process or in the kernel's send queue).
# Over a quarter of either limit, live chart updates are conflated; over a
# limit the connection is closed 4008 (slow consumer) and aborted if it has
# not read up to its close frame within the grace period.
LEDGERCORE_SEND_BUFFER_BYTES = config.integer("LEDGERCORE_SEND_BUFFER_BYTES", 1024 * 1024, minimum=4096)
LEDGERCORE_SEND_BUFFER_FRAMES = config.integer("LEDGERCORE_SEND_BUFFER_FRAMES", 4096, minimum=16)
LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS = config.number("LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS", 5.0, minimum=0.1)
# Room history for missed-event recovery: each room keeps its events for this
# long and at most this many of them (in Redis on the scaled stack, in
# process memory on the embedded one).
LEDGERCORE_HISTORY_SECONDS = config.number("LEDGERCORE_HISTORY_SECONDS", 120.0, minimum=1.0)
LEDGERCORE_HISTORY_SIZE = config.integer("LEDGERCORE_HISTORY_SIZE", 1000, minimum=1)

# --- server processes ---------------------------------------------------------
# Each server process refreshes a heartbeat row in the database this often;
# one silent for LEDGERCORE_PROCESS_DEAD_SECONDS is dead, and live processes
# release its credit holds and fail its running query records.
LEDGERCORE_PROCESS_HEARTBEAT_SECONDS = config.number("LEDGERCORE_PROCESS_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
LEDGERCORE_PROCESS_DEAD_SECONDS = config.number("LEDGERCORE_PROCESS_DEAD_SECONDS", 30.0, minimum=1.0)
if LEDGERCORE_PROCESS_DEAD_SECONDS < 3 * LEDGERCORE_PROCESS_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "LEDGERCORE_PROCESS_DEAD_SECONDS: must be at least three LEDGERCORE_PROCESS_HEARTBEAT_SECONDS"
    )
# On SIGTERM/SIGINT a server process (ledgercore.serve) stops accepting and
# gives requests in flight this long to finish before it stops them
# (refunded) and closes every connection with 1001.
LEDGERCORE_DRAIN_SECONDS = config.number("LEDGERCORE_DRAIN_SECONDS", 10.0, minimum=0.0)

# --- credits ----------------------------------------------------------------
# Default price per action (event name); per-application overrides in admin.
LEDGERCORE_PRICES = config.prices("LEDGERCORE_PRICES", {})
# A hold not captured or released within this time is released.
LEDGERCORE_HOLD_TTL_SECONDS = config.integer("LEDGERCORE_HOLD_TTL_SECONDS", 900, minimum=1)
# Credit events not confirmed sent this long after commit are re-sent by the
# relay of any server process (at-least-once; clients dedupe by sequence).
LEDGERCORE_OUTBOX_RETRY_SECONDS = config.number("LEDGERCORE_OUTBOX_RETRY_SECONDS", 5.0, minimum=0.1)
# Movements on one account that arrive together in one process are committed
# in one transaction (each still its own entry); at most this many per
# commit. 1 commits every movement alone.
LEDGERCORE_GROUP_COMMIT_MAX = config.integer("LEDGERCORE_GROUP_COMMIT_MAX", 256, minimum=1)

# --- query engine -----------------------------------------------------------
# Defaults per application (admin "Query limits" override them per application).
LEDGERCORE_QUERY_TIME_LIMIT_MS = config.integer("LEDGERCORE_QUERY_TIME_LIMIT_MS", 10_000, minimum=100)
LEDGERCORE_QUERY_MAX_ROWS = config.integer("LEDGERCORE_QUERY_MAX_ROWS", 10_000, minimum=1)
LEDGERCORE_QUERY_MAX_CONCURRENT = config.integer("LEDGERCORE_QUERY_MAX_CONCURRENT", 2, minimum=1)
LEDGERCORE_QUERY_DEFAULT_LIMIT = config.integer("LEDGERCORE_QUERY_DEFAULT_LIMIT", 1_000, minimum=1)
LEDGERCORE_QUERY_CHUNK_ROWS = config.integer("LEDGERCORE_QUERY_CHUNK_ROWS", 500, minimum=1)
# PostgreSQL role user SQL runs as: SELECT on the catalog's columns only.
LEDGERCORE_QUERY_PG_ROLE = config.text("LEDGERCORE_QUERY_PG_ROLE", "ledgercore_query")
# Create/update that role and its grants on first use (needs a database user
# allowed to; otherwise run `manage.py setup_query_role` once as an owner).
LEDGERCORE_QUERY_ENSURE_ROLE = config.flag("LEDGERCORE_QUERY_ENSURE_ROLE", True)
# Queries log in AS that role, never with Django's login: its password
# (empty: none, for trust/peer authentication) ...
LEDGERCORE_QUERY_PG_PASSWORD = config.text("LEDGERCORE_QUERY_PG_PASSWORD", "")
# ... and optionally its whole postgres:// URL (a replica, a pooler); empty:
# Django's database with the user and password replaced by the two above.
LEDGERCORE_QUERY_DATABASE_URL = config.text("LEDGERCORE_QUERY_DATABASE_URL", "")

# --- market data --------------------------------------------------------------
# Run live demo trades inside the server (synthetic BTC-USD/ETH-USD, and the
# Binance fixture replayed as XRP-ETH): `make run` turns it on.
LEDGERCORE_MARKET_DEMO_FEED = config.flag("LEDGERCORE_MARKET_DEMO_FEED", False)
# Replay speed of the fixture in the demo feed (0: no replay).
LEDGERCORE_MARKET_REPLAY_SPEED = config.number("LEDGERCORE_MARKET_REPLAY_SPEED", 60.0, minimum=0.0)
# Folder of the Binance reference files (default: data/market in the repository).
LEDGERCORE_MARKET_FIXTURE_DIR = config.text("LEDGERCORE_MARKET_FIXTURE_DIR", "")

# --- compliance ---------------------------------------------------------------
# Folder of the OFAC sanctioned-address lists (default: data/ofac in the repository).
LEDGERCORE_OFAC_DIR = config.text("LEDGERCORE_OFAC_DIR", "")
# Where address analyses run: "inprocess" (worker threads of the server
# process, no extra command) or "tasks" (Django Tasks, django_tasks_db
# backend: run `manage.py db_worker` on any number of machines). Default:
# inprocess on SQLite, tasks on PostgreSQL.
LEDGERCORE_JOBS = config.text(
    "LEDGERCORE_JOBS", "inprocess" if DATABASES["default"]["ENGINE"].endswith("sqlite3") else "tasks"
).lower()
if LEDGERCORE_JOBS not in {"inprocess", "tasks"}:
    raise ImproperlyConfigured(f"LEDGERCORE_JOBS: expected inprocess or tasks, got {LEDGERCORE_JOBS!r}")
# Worker threads per server process for in-process analyses.
LEDGERCORE_ANALYSIS_WORKERS = config.integer("LEDGERCORE_ANALYSIS_WORKERS", 2, minimum=1)
# A running job whose heartbeat is older than this is presumed dead: retried
# once, then failed and refunded.
LEDGERCORE_ANALYSIS_STALE_SECONDS = config.number("LEDGERCORE_ANALYSIS_STALE_SECONDS", 30.0, minimum=1.0)
# How long a request waits for its job; past it the job fails with TIMEOUT
# (refunded). Keep it below LEDGERCORE_HOLD_TTL_SECONDS.
LEDGERCORE_ANALYSIS_TIME_LIMIT_SECONDS = config.number("LEDGERCORE_ANALYSIS_TIME_LIMIT_SECONDS", 300.0, minimum=1.0)
# Bounds of the graph expansion; past them the response says "truncated".
LEDGERCORE_ANALYSIS_MAX_EDGES_PER_HOP = config.integer("LEDGERCORE_ANALYSIS_MAX_EDGES_PER_HOP", 20_000, minimum=10)
LEDGERCORE_ANALYSIS_MAX_EDGES = config.integer("LEDGERCORE_ANALYSIS_MAX_EDGES", 100_000, minimum=10)
LEDGERCORE_ANALYSIS_MAX_FRONTIER = config.integer("LEDGERCORE_ANALYSIS_MAX_FRONTIER", 2_000, minimum=1)
# Django Tasks: the durable database backend (used when LEDGERCORE_JOBS=tasks).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# Garbage-collector thresholds of server processes (gen0,gen1,gen2); empty
# keeps Python's defaults.
LEDGERCORE_GC_THRESHOLDS = config.gc_thresholds("LEDGERCORE_GC_THRESHOLDS", (100_000, 50, 1000))

# --- chat -----------------------------------------------------------------
# Translator of chat questions into catalog SQL: "builtin" (offline,
# deterministic) or "openai" (any OpenAI-compatible chat-completions server).
LEDGERCORE_CHAT_TRANSLATOR = config.text("LEDGERCORE_CHAT_TRANSLATOR", "builtin").strip().lower()
if LEDGERCORE_CHAT_TRANSLATOR not in {"builtin", "openai"}:
    raise ImproperlyConfigured(
        f"LEDGERCORE_CHAT_TRANSLATOR: expected builtin or openai, got {LEDGERCORE_CHAT_TRANSLATOR!r}"
    )
# Earlier turns of a conversation a question is read with (follow-ups).
LEDGERCORE_CHAT_HISTORY_TURNS = config.integer("LEDGERCORE_CHAT_HISTORY_TURNS", 6, minimum=0)
# The openai translator: base URL up to /v1 (OpenAI, vLLM, llama.cpp server,
# Ollama), model name, API key (empty: no Authorization header), and how
# long to wait for the server.
LEDGERCORE_CHAT_OPENAI_BASE_URL = config.text("LEDGERCORE_CHAT_OPENAI_BASE_URL", "https://api.openai.com/v1")
LEDGERCORE_CHAT_OPENAI_MODEL = config.text("LEDGERCORE_CHAT_OPENAI_MODEL", "gpt-4o-mini")
LEDGERCORE_CHAT_OPENAI_API_KEY = config.text("LEDGERCORE_CHAT_OPENAI_API_KEY", "")
LEDGERCORE_CHAT_OPENAI_TIMEOUT_SECONDS = config.number("LEDGERCORE_CHAT_OPENAI_TIMEOUT_SECONDS", 60.0, minimum=1.0)
if LEDGERCORE_CHAT_TRANSLATOR == "openai" and not LEDGERCORE_CHAT_OPENAI_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("LEDGERCORE_CHAT_OPENAI_BASE_URL: expected an http:// or https:// URL")

# --- Socket.IO (socketio_gateway) ------------------------------------------
# Engine.IO heartbeat: the server pings every interval and closes a session
# whose pong has not come within the timeout; maxPayload bounds one HTTP
# long-polling body or one WebSocket message; a session that has connected
# no namespace within the connect timeout is closed.
LEDGERCORE_SOCKETIO_PING_INTERVAL_MS = config.integer("LEDGERCORE_SOCKETIO_PING_INTERVAL_MS", 25_000, minimum=50)
LEDGERCORE_SOCKETIO_PING_TIMEOUT_MS = config.integer("LEDGERCORE_SOCKETIO_PING_TIMEOUT_MS", 20_000, minimum=50)
LEDGERCORE_SOCKETIO_MAX_PAYLOAD = config.integer("LEDGERCORE_SOCKETIO_MAX_PAYLOAD", 1_000_000, minimum=1024)
LEDGERCORE_SOCKETIO_CONNECT_TIMEOUT_MS = config.integer("LEDGERCORE_SOCKETIO_CONNECT_TIMEOUT_MS", 45_000, minimum=100)
# Test configuration of the official protocol suites (`make conformance`):
# echo namespaces / and /custom, Engine.IO echo at /engine.io/, heartbeat
# 300/200 ms, connect timeout 1.5 s (their heartbeat tests keep a session
# without a namespace for three pings, about 1 s). The product is then not served over
# Socket.IO. Never set in production.
LEDGERCORE_SOCKETIO_CONFORMANCE = config.flag("LEDGERCORE_SOCKETIO_CONFORMANCE", False)
if LEDGERCORE_SOCKETIO_CONFORMANCE:
    LEDGERCORE_SOCKETIO_PING_INTERVAL_MS = 300
    LEDGERCORE_SOCKETIO_PING_TIMEOUT_MS = 200
    LEDGERCORE_SOCKETIO_MAX_PAYLOAD = 1_000_000
    LEDGERCORE_SOCKETIO_CONNECT_TIMEOUT_MS = 1_500

# --- authentication -------------------------------------------------------
LEDGERCORE_DEV_JWT_SECRET = config.text("LEDGERCORE_DEV_JWT_SECRET", "")
if LEDGERCORE_DEV_JWT_SECRET and not DEBUG and not security.strong_secret(LEDGERCORE_DEV_JWT_SECRET, 32):
    raise ImproperlyConfigured(
        "LEDGERCORE_DEV_JWT_SECRET: a known default or too short (at least 32 random characters; "
        "leave it empty to accept only the identity provider's tokens)"
    )
CLERK_JWKS_URL = config.text("CLERK_JWKS_URL", "")
CLERK_JWT_KEY = config.text("CLERK_JWT_KEY", "").replace("\\n", "\n")
CLERK_ISSUER = config.text("CLERK_ISSUER", "")
CLERK_AUTHORIZED_PARTIES = config.items("CLERK_AUTHORIZED_PARTIES", [])
CLERK_LEEWAY_SECONDS = config.integer("CLERK_LEEWAY_SECONDS", 5, minimum=0)
CLERK_JWKS_CACHE_SECONDS = config.integer("CLERK_JWKS_CACHE_SECONDS", 300, minimum=0)
# Minimum time between refetches caused by an unknown kid, so that tokens
# with made-up kids cannot make the server hammer the identity provider.
CLERK_JWKS_REFRESH_COOLDOWN_SECONDS = config.number("CLERK_JWKS_REFRESH_COOLDOWN_SECONDS", 10.0)
# How long a token whose kid is not cached waits for the key set (and the
# socket timeout of the fetch); cached keys never wait.
CLERK_JWKS_TIMEOUT_SECONDS = config.number("CLERK_JWKS_TIMEOUT_SECONDS", 3.0, minimum=0.1)
if CLERK_JWT_KEY and "BEGIN PUBLIC KEY" not in CLERK_JWT_KEY:
    raise ImproperlyConfigured("CLERK_JWT_KEY: expected a PEM public key (-----BEGIN PUBLIC KEY-----)")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- HTTP API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "realtime.rest.BearerTokenAuthentication",
        "accounts.apikeys.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # A request made with an API key also needs the view's api_key_scope.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "accounts.apikeys.ApiKeyScopes"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LedgerCore Realtime API",
    "VERSION": "1.0.0",
    # One name for the risk levels that analyses use for scores and signals.
    "ENUM_NAME_OVERRIDES": {"RiskLevelEnum": ["low", "medium", "high", "severe"]},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "realtime.openapi.add_error_responses",
    ],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

# --- logging --------------------------------------------------------------
LOG_LEVEL = config.text("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: unknown level {LOG_LEVEL!r}")
LOG_FORMAT = config.text("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected text or json, got {LOG_FORMAT!r}")
# One line per WebSocket request when it ends (event, id, user, application,
# duration, outcome) on the logger ledgercore.requests.
LEDGERCORE_REQUEST_LOG = config.flag("LEDGERCORE_REQUEST_LOG", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "realtime.logs.RedactSecrets"},
        "context": {"()": "realtime.logcontext.AddContext"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # The bracketed summary is for the console; JSON has the fields.
            "reserved_attrs": [*RESERVED_ATTRS, "context"],
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact", "context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

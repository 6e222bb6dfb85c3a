"""Configuration read from the environment; docs/deploy.md describes every variable."""

import os
from datetime import timedelta


def database_url(url: str | None) -> str | None:
    """Normalise a PostgreSQL URL so SQLAlchemy uses psycopg 3 rather than psycopg2."""
    if url is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def env_flag(name: str) -> bool:
    """True when the environment variable is set to 1, true or yes."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def env_count(name: str, default: int) -> int:
    """A whole number of at least 1 from the environment variable, or default when it is unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


class Config:
    """Settings for running the app; values come from the environment."""

    # None means "SQLite file in the instance folder", filled in by create_app.
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    # None means "generated once and kept in the instance folder", see create_app.
    SECRET_KEY = os.environ.get("SECRET_KEY") or None

    # Behind a TLS-terminating proxy: Secure cookies, HSTS, one trusted proxy hop.
    HTTPS = env_flag("ESTIMATOR_HTTPS")
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    PERMANENT_SESSION_LIFETIME = timedelta(days=30)
    # The session cookie is sent again only when it changes (a login, a language), not signed
    # afresh on every answer: a vote or an event stream sends none.
    SESSION_REFRESH_EACH_REQUEST = False

    # The CSRF token lives as long as the session: a page left open all day still submits.
    WTF_CSRF_TIME_LIMIT = None
    WTF_CSRF_SSL_STRICT = True

    BOOTSTRAP_SERVE_LOCAL = True
    MAX_CONTENT_LENGTH = 64 * 1024

    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    # Names the counters in a shared store, so several apps can share one Redis.
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "estimator")
    RATELIMIT_HEADERS_ENABLED = True
    # If the shared counter store is unreachable, count in memory rather than fail requests.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # Generous per address, so that a team of 100 behind one office address is never refused;
    # guessing is limited per nickname and per invite token instead.
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT") or "300 per minute"
    JOIN_RATE_LIMIT = os.environ.get("JOIN_RATE_LIMIT") or "300 per minute"
    # Wrong passwords per nickname (a browser holding its claim counts on its own).
    PASSWORD_FAILURE_LIMIT = os.environ.get("PASSWORD_FAILURE_LIMIT") or "10 per 15 minutes"
    # Unknown invite tokens, counted per client address and per token: then every join waits.
    INVITE_GUESS_LIMIT = os.environ.get("INVITE_GUESS_LIMIT") or "20 per 10 minutes"

    # Where the open rounds' ballot keys live: redis://… when several machines serve; unset, a
    # memory-backed folder (/dev/shm) shared by this machine's workers. Never the database.
    BALLOT_KEY_STORE_URI = os.environ.get("BALLOT_KEY_STORE_URI") or None
    # A key store that writes to disk (Redis `save`/`appendonly`, a folder not in tmpfs) keeps keys
    # past the reveal: refused at start unless this is set to 1 (docs/anonymity.md says what it costs).
    BALLOT_KEY_STORE_ALLOW_PERSISTENCE = env_flag("BALLOT_KEY_STORE_ALLOW_PERSISTENCE")
    # Whether this app serves requests, and so checks at start that every instance on its database
    # has the same SECRET_KEY and key store (instances.py): None means "when gunicorn runs it".
    SERVING: bool | None = None
    # How often each serving process refreshes its row in the database's `instances` table, in
    # seconds; one that missed 8 of them no longer counts as running (2 minutes by default).
    INSTANCE_HEARTBEAT_SECONDS = float(os.environ.get("INSTANCE_HEARTBEAT_SECONDS") or 15)

    # How often live pages ask whether anything changed when they cannot hold an event stream,
    # in milliseconds.
    LIVE_POLL_MS = 1000
    # How long one event stream stays open before the browser reconnects (and its login and
    # membership are checked again), in seconds.
    LIVE_STREAM_SECONDS = float(os.environ.get("LIVE_STREAM_SECONDS") or 300)
    # How often a quiet event stream sends a comment, so that proxies keep it open, in seconds.
    LIVE_HEARTBEAT_SECONDS = min(25.0, float(os.environ.get("LIVE_HEARTBEAT_SECONDS") or 15))
    # Event streams one login, and one client address, may hold open in each worker process: past
    # either, a stream is answered 429 and the page polls. An address may be a whole office.
    LIVE_STREAMS_PER_LOGIN = env_count("LIVE_STREAMS_PER_LOGIN", 20)
    LIVE_STREAMS_PER_ADDRESS = env_count("LIVE_STREAMS_PER_ADDRESS", 500)
    #: PostgreSQL connections a gevent worker keeps open, and the most it opens: requests beyond wait.
    DATABASE_POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE") or 20)
    #: Whether statements run often are prepared on the PostgreSQL server: 0 behind a pooler in
    #: transaction mode (PgBouncer's pool_mode = transaction), which cannot keep them.
    DATABASE_PREPARED_STATEMENTS = os.environ.get("DATABASE_PREPARED_STATEMENTS") or "1"
    # Memory each process may spend on live regions and JSON states shared by their viewers, in bytes.
    LIVE_CACHE_BYTES = 32 * 1024 * 1024
    # Whether the workers of one machine share their live builds (estimator/live/shelf.py): one
    # render per change instead of one per worker. Only with the one-machine (shm) ballot key store.
    LIVE_SHARED_BUILDS = os.environ.get("LIVE_SHARED_BUILDS", "1").strip().lower() not in {"0", "false", "no"}

    # Log lines as `text` or as `json` objects (one a line, with the request id); see docs/deploy.md.
    LOG_FORMAT = os.environ.get("LOG_FORMAT") or "text"
    # Prometheus metrics at /metrics: off unless asked for, so a public site does not publish them.
    METRICS_ENABLED = env_flag("METRICS_ENABLED")

    # The key that encrypts tracker credentials at rest: 32 random bytes in base64 (several,
    # comma-separated, while replacing one: the first encrypts, all decrypt). Unset, no tracker can
    # be connected; never a key written in the code.
    TRACKER_SECRET_KEY = os.environ.get("TRACKER_SECRET_KEY") or None
    # The only trackers the server may reach: host names, or host:port for a port other than 80
    # and 443, comma-separated. Empty (the default), it reaches none.
    TRACKER_ALLOWED_HOSTS = os.environ.get("TRACKER_ALLOWED_HOSTS", "")
    # Whether an allowed host may be on a loopback, private or link-local address (a tracker inside
    # the company network): off, such an address is refused, whatever name leads to it.
    TRACKER_ALLOW_PRIVATE = env_flag("TRACKER_ALLOW_PRIVATE")


class ProductionConfig(Config):
    """The same as Config; named so deployments can say what they run."""


class TestConfig(Config):
    """Fresh, fast and deterministic settings for the test suite."""

    TESTING = True
    SECRET_KEY = "test-only-secret"
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    WTF_CSRF_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    LOGIN_RATE_LIMIT = "1000 per minute"
    PASSWORD_FAILURE_LIMIT = "1000 per minute"
    JOIN_RATE_LIMIT = "1000 per minute"
    INVITE_GUESS_LIMIT = "1000 per minute"
    HTTPS = False
    LOG_FORMAT = "text"
    METRICS_ENABLED = False
    # In-process requests read a stream to its end: keep test streams short.
    LIVE_STREAM_SECONDS = 0.3
    # Apps built by the tests share one database and serve nothing: they record no instance.
    SERVING = False
    # Tracker credentials are encrypted in tests too; the tests that reach a tracker allow it.
    TRACKER_SECRET_KEY = "dGVzdC1vbmx5LXRyYWNrZXIta2V5LTMyLWJ5dGVzISE="
    TRACKER_ALLOWED_HOSTS = ""
    TRACKER_ALLOW_PRIVATE = False

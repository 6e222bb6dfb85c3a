"""Estimator: planning poker in which nobody can learn who voted what."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from config import Config

from . import outages
from .assets import register_assets
from .bodies import register_body_limits
from .errors import register_error_handlers
from .extensions import ballot_keys, bootstrap, csrf, db, limiter, login_manager, migrate
from .flashes import register_flash_limit
from .i18n import register_i18n
from .instances import register_instances
from .live import register_live
from .observability import register_observability
from .security import register_security

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config_class: type = Config) -> Flask:
    """Build the app: the only place where the parts are wired together."""
    app = Flask(__name__, template_folder="../templates", instance_relative_config=True)
    app.config.from_object(config_class)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    configure_defaults(app)
    register_observability(app)
    register_extensions(app)
    register_request_intent(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_template_helpers(app)
    register_i18n(app)
    register_security(app)
    register_live(app)
    register_flash_limit(app)
    register_body_limits(app)
    register_assets(app)
    register_instances(app)
    return app


def instance_secret_key(instance_path: str) -> str:
    """A random key generated on first start and kept in the instance folder.

    Several workers may start at once: the key is written to a temporary file and linked into
    place, which fails for all but the first, and every worker then reads the same key.
    """
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        with tempfile.NamedTemporaryFile("w", dir=instance_path, delete=False) as handle:
            handle.write(secrets.token_hex(32))
        os.chmod(handle.name, 0o600)
        try:
            os.link(handle.name, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(handle.name)
    return path.read_text().strip()


def configure_defaults(app: Flask) -> None:
    """Fill in what the environment left open: database file, secret key, Redis timeouts."""
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(
            Path(app.instance_path) / "estimator.sqlite"
        )
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options: dict[str, object] = {"connect_args": {"timeout": 30}}
        if cooperative():
            # A few connections per process: readers go on beside a writer (WAL), and a writer
            # waits for the write lock in cooperative sleeps (database.begin_immediate).
            options |= {"pool_size": 4, "max_overflow": 0, "pool_timeout": 30}
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", options)
    elif cooperative():
        # Greenlets, not threads: many requests of one worker may wait on the database at once.
        # Past the pool they wait their turn for a connection rather than open one more: under
        # 5,000 participants connections opened at busy times and closed right after (some 400 in
        # 30 s) cost PostgreSQL a process each and doubled the votes' p95.
        size = app.config["DATABASE_POOL_SIZE"]
        app.config.setdefault(
            "SQLALCHEMY_ENGINE_OPTIONS", {"pool_size": size, "max_overflow": 0, "pool_timeout": 30}
        )
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)
    storage = str(app.config.get("RATELIMIT_STORAGE_URI") or "")
    if urlsplit(storage).scheme in {"redis", "rediss", "redis+unix"}:
        # Short timeouts and a breaker (outages.py): while Redis does not answer, limits count in
        # memory at once (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) rather than keep a login waiting.
        app.config["RATELIMIT_STORAGE_OPTIONS"] = outages.redis_options("Rate limit storage", storage) | dict(
            app.config.get("RATELIMIT_STORAGE_OPTIONS") or {}
        )


def cooperative() -> bool:
    """Whether this process runs under gevent (its workers patch the standard library)."""
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


def register_extensions(app: Flask) -> None:
    """Bind the extensions created in extensions.py to this app."""
    from .database import configure_postgresql, configure_sqlite, switched_on

    prepare = switched_on("DATABASE_PREPARED_STATEMENTS", app.config["DATABASE_PREPARED_STATEMENTS"])
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine, cooperative())
        elif db.engine.dialect.name == "postgresql":
            configure_postgresql(db.engine, prepare)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    ballot_keys.init_app(app)
    bootstrap.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.session_protection = "basic"


def register_request_intent(app: Flask) -> None:
    """Tell the database layer what each request means to do (database.INTENT): reading requests
    read without a transaction on PostgreSQL, writing ones take SQLite's write lock up front, or
    when they lock if their view `locks_later`."""
    from flask import request

    from .database import INTENT, READ, WRITE, WRITE_LATER

    @app.before_request
    def set_intent() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            intent = READ
        else:
            view = app.view_functions.get(request.endpoint or "")
            intent = WRITE_LATER if getattr(view, "locks_later", False) else WRITE
        request.environ["estimator.intent"] = INTENT.set(intent)

    @app.teardown_request
    def reset_intent(_error: BaseException | None) -> None:
        token = request.environ.pop("estimator.intent", None)
        if token is not None:
            INTENT.reset(token)


class IdConverter(IntegerConverter):
    """A database id in a URL: 1 to 2**31 - 1, so no number the database cannot hold gets in."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)


def register_blueprints(app: Flask) -> None:
    """Attach the blueprints."""
    app.url_map.converters["id"] = IdConverter
    from .api import bp as api_bp
    from .auth import bp as auth_bp
    from .groups import bp as groups_bp
    from .health import bp as health_bp
    from .theme import bp as theme_bp
    from .trackers.routes import bp as trackers_bp
    from .voting import bp as voting_bp

    for blueprint in (auth_bp, groups_bp, voting_bp, api_bp, health_bp, theme_bp, trackers_bp):
        app.register_blueprint(blueprint)


def register_template_helpers(app: Flask) -> None:
    """Filters and globals the templates use."""
    from .estimates import DECKS, middle_cards
    from .filters import card_padding
    from .models import MIN_VOTES_SAFE, IssueState, Role

    app.jinja_env.filters.update(card_padding=card_padding)
    app.jinja_env.globals.update(
        DECKS=DECKS,
        Role=Role,
        IssueState=IssueState,
        MIN_VOTES_SAFE=MIN_VOTES_SAFE,
        middle_cards=middle_cards,
    )

"""python run.py [--host H] [--port P]: upgrade the database schema, then serve with gunicorn.

gevent's workers hold thousands of open event streams each; the standard library is made
cooperative before anything else is imported, as gevent requires.
"""

from gevent import monkey  # type: ignore[import-untyped]  # gevent ships no type hints

monkey.patch_all()

import argparse  # noqa: E402
import resource  # noqa: E402

from flask import Flask  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from gunicorn.app.base import BaseApplication  # noqa: E402

from estimator import create_app  # noqa: E402
from estimator.extensions import db  # noqa: E402

#: Open connections per worker: every open page holds one event stream.
WORKER_CONNECTIONS = 10_000


class Server(BaseApplication):
    """gunicorn, configured from here instead of from its command line."""

    def __init__(self, app: Flask, options: dict[str, str | int]) -> None:
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        """Hand our options to gunicorn in place of its command line."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:  # type: ignore[override]  # stubs: environ a MutableMapping, in Flask a dict
        """The app gunicorn serves in each worker."""
        return self.application


def main() -> None:
    """Parse the arguments, migrate, serve."""
    parser = argparse.ArgumentParser(description="Serve Estimator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    raise_open_file_limit()
    app = create_app()
    with app.app_context():
        upgrade()
        # The workers are forked from this process: none may inherit the migration's connection.
        db.engine.dispose()
    print(f"Estimator is running on http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    Server(
        app,
        {
            "bind": f"{args.host}:{args.port}",
            "workers": args.workers,
            "worker_class": "gevent",
            "worker_connections": WORKER_CONNECTIONS,
            "accesslog": "-",
        },
    ).run()


def raise_open_file_limit() -> None:
    """Allow as many open connections as the system lets this process have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WORKER_CONNECTIONS * 2 if hard == resource.RLIM_INFINITY else min(hard, WORKER_CONNECTIONS * 2)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


if __name__ == "__main__":
    main()

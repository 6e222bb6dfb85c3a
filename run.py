"""python run.py [--host H] [--port P]: upgrade the database schema, then serve with gunicorn."""

import argparse

from flask import Flask
from flask_migrate import upgrade
from gunicorn.app.base import BaseApplication

from estimator import create_app


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
    app = create_app()
    with app.app_context():
        upgrade()
    print(f"Estimator is running on http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    Server(
        app,
        {
            "bind": f"{args.host}:{args.port}",
            "workers": args.workers,
            "worker_class": "gthread",
            "threads": 8,
            "accesslog": "-",
        },
    ).run()


if __name__ == "__main__":
    main()

"""python run.py [--host H] [--port P] [--workers N]: upgrade the database schema, then serve with
gunicorn configured by gunicorn.conf.py, as the `gunicorn` command run from this folder is.

This process loads nothing of the app: the schema is upgraded by `flask db upgrade` in a process
of its own, and each gunicorn worker builds the app once gevent has patched it. (An app built here
before the workers were forked left threads of its own half started in them.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from gunicorn.app.base import Application
from gunicorn.util import import_app

ROOT = Path(__file__).resolve().parent
#: The server's settings, shared with the `gunicorn` command.
SETTINGS = ROOT / "gunicorn.conf.py"
APP = "estimator:create_app()"


class Server(Application):
    """gunicorn with gunicorn.conf.py's settings, and this script's address and workers."""

    def __init__(self, options: dict[str, str | int]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """gunicorn.conf.py, then our options in place of a command line."""
        self.load_config_from_file(str(SETTINGS))
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        """The app, built in each worker."""
        return import_app(APP)


def upgrade_schema() -> None:
    """Create or upgrade the database schema, in a process of its own; stop if that fails."""
    command = [sys.executable, "-m", "flask", "--app", "estimator", "db", "upgrade"]
    if subprocess.run(command, cwd=ROOT, check=False).returncode:
        sys.exit("The database schema could not be upgraded (see above); nothing is served.")


def main() -> None:
    """Parse the arguments, migrate, serve."""
    parser = argparse.ArgumentParser(description="Serve Estimator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    upgrade_schema()
    print(f"Estimator is running on http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    Server({"bind": f"{args.host}:{args.port}", "workers": args.workers}).run()


if __name__ == "__main__":
    main()

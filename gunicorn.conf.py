"""gunicorn's settings for Estimator. gunicorn reads this file from the folder it starts in, so
`gunicorn -w 4 'estimator:create_app()'` run from the project folder serves as production should;
run.py serves with this file too. Options given on the command line (or in GUNICORN_CMD_ARGS)
win over the settings here: `-k sync` gives sync workers, `--bind` an address (unset here, so
gunicorn's own default stands).

Every open page holds its group's event stream, so a worker must hold thousands of connections at
once: gevent workers, which gunicorn patches before the app is loaded in them. Workers that cannot
(sync, gthread) still serve everything: the stream then answers 204 at once and pages poll.
Only the standard library is imported here: this file is read by gunicorn's master process, which
never loads the app.
"""

from __future__ import annotations

import gc
import importlib.util
import resource
import sys
from typing import Any

#: gevent when it is installed (requirements.txt pins it).
worker_class = "gevent" if importlib.util.find_spec("gevent") is not None else "sync"
#: Open connections per gevent worker: every open page holds one event stream.
worker_connections = 10_000
#: gunicorn's access log, one line a request, to standard output.
accesslog = "-"

#: Allocations between two collections of the youngest generation (Python's default is 700), and
#: how many of those before each older generation is collected (as by default).
GC_THRESHOLDS = (7000, 10, 10)


def on_starting(server: Any) -> None:
    """In the master, before any worker: allow every worker's connections (two files each at
    most, the client's and a database connection's) as far as the system lets this user."""
    raise_open_file_limit(server.cfg.worker_connections * 2)


def post_worker_init(worker: Any) -> None:
    """In each worker once the app is loaded: a gevent worker settles its garbage collector."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        settle_garbage_collector()


def raise_open_file_limit(wanted: int) -> None:
    """Raise this process's soft limit of open files to `wanted`, or to the hard limit below it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def settle_garbage_collector() -> None:
    """In a gevent worker holding thousands of streams: the objects built so far (the app, its
    libraries) live as long as the process, so the collector stops walking them (gc.freeze), and
    every generation is collected ten times less often. A worker spent 2.6 s collecting in a 75 s
    capacity run with PostgreSQL and 5,000 streams, in pauses of up to 100 ms that every request
    of the worker waited out."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

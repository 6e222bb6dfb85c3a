"""How much live polling costs: 304 polls, page renders and votes against gunicorn (3 workers).

    python bench/live_polling.py [--seconds 5] [--clients 20]

Uses DATABASE_URL when set (the database must exist), else a fresh SQLite file. Every request
goes to 127.0.0.1 only, and each phase stops after --seconds.
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402

from config import TestConfig, database_url  # noqa: E402
from estimator import create_app  # noqa: E402
from tests.http import Person  # noqa: E402
from tests.server import start_gunicorn, stop  # noqa: E402


def measure(name: str, clients: int, seconds: float, action: Callable[[int], bool]) -> None:
    """Run action in `clients` threads for `seconds`; print throughput and latency."""
    latencies: list[float] = []
    errors: list[float] = []
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()

    def loop(index: int) -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            ok = action(index)
            elapsed = time.perf_counter() - started
            with lock:
                (latencies if ok else errors).append(elapsed)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(len(ms) * 0.95) - 1] if ms else float("nan")
    print(
        f"{name:<28} {len(ms) / seconds:8.0f} req/s   p50 {statistics.median(ms):6.1f} ms   "
        f"p95 {p95:6.1f} ms   errors {len(errors)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="estimator-bench-"))
    uri = database_url(os.environ.get("DATABASE_URL")) or f"sqlite:///{workdir / 'bench.sqlite'}"
    app = create_app(type("BenchConfig", (TestConfig,), {"SQLALCHEMY_DATABASE_URI": uri}))
    with app.app_context():
        upgrade()
    process, url = start_gunicorn(uri, workdir / "gunicorn.log")
    try:
        owner = Person(url)
        owner.login(f"Bench owner {time.time_ns()}")
        owner.post("/groups", {"name": "Bench", "deck": "fibonacci"}, owner.token("/"))
        group_id = max(_my_groups(owner))
        owner.post(f"/groups/{group_id}/issues", {"key": "B-1"}, owner.token(f"/groups/{group_id}"))
        issue_id = owner.api(f"/api/groups/{group_id}")["issues"][0]["id"]
        etag = owner.request(f"/api/issues/{issue_id}")[2]["ETag"]
        print(f"database: {uri.split(':')[0]}, {args.clients} clients, {args.seconds:g} s per phase")
        measure(
            "poll, unchanged (304)",
            args.clients,
            args.seconds,
            lambda i: owner.request(f"/api/issues/{issue_id}", headers={"If-None-Match": etag})[0] == 304,
        )
        measure(
            "poll, full JSON (200)",
            args.clients,
            args.seconds,
            lambda i: owner.request(f"/api/issues/{issue_id}")[0] == 200,
        )
        measure(
            "status page render",
            args.clients,
            args.seconds,
            lambda i: owner.request(f"/issues/{issue_id}")[0] == 200,
        )
        token = owner.token(f"/issues/{issue_id}/estimate")
        cards = ["1", "2", "3", "5", "8"]
        measure(
            "vote (POST, redirect)",
            args.clients,
            args.seconds,
            lambda i: owner.post(f"/issues/{issue_id}/estimate", {"value": cards[i % 5]}, token) == 302,
        )
    finally:
        stop(process)


def _my_groups(owner: Person) -> list[int]:
    """The ids of the groups on the owner's dashboard."""
    return [int(x) for x in re.findall(r'href="/groups/(\d+)"', owner.request("/")[1])]


if __name__ == "__main__":
    main()

"""The production command as written, `gunicorn -w 4 'estimator:create_app()'`, run from the project
folder: gunicorn.conf.py gives it gevent workers, run.py serves with the same settings, and a clean
start prints no traceback."""

import runpy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from run import Server
from tests.server import ROOT, free_port, serve, stop

BIN = Path(sys.executable).parent
SETTINGS = ROOT / "gunicorn.conf.py"
STARTING = 90  # seconds a server may take to answer at first, on a busy machine


def settings() -> dict[str, Any]:
    """gunicorn.conf.py's names, as gunicorn reads them."""
    return runpy.run_path(str(SETTINGS))


# --- gunicorn.conf.py ------------------------------------------------------------------------------


def test_the_settings_give_gevent_workers_that_hold_many_connections_and_log_each_request():
    found = settings()
    assert found["worker_class"] == "gevent"
    assert found["worker_connections"] >= 5000
    assert found["accesslog"] == "-"
    assert "bind" not in found and "workers" not in found  # gunicorn's defaults, or the command's


def test_run_py_serves_with_the_same_settings_at_its_own_address():
    config = Server({"bind": "127.0.0.1:5999", "workers": 3}).cfg
    found = settings()
    assert config.worker_class_str == found["worker_class"]
    assert config.worker_connections == found["worker_connections"]
    assert config.accesslog == found["accesslog"]
    assert config.bind == ["127.0.0.1:5999"] and config.workers == 3


def test_the_master_raises_the_open_file_limit_for_its_workers_connections():
    import resource

    class Master:
        class cfg:
            worker_connections = 10_000

    settings()["on_starting"](Master())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= min(20_000, hard) or soft == resource.RLIM_INFINITY


def test_a_gevent_worker_stops_collecting_what_lives_as_long_as_it_and_collects_young_objects_less_often():
    import gc

    found = settings()
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        found["post_worker_init"](None)  # not gevent-patched (this test process): left alone
        assert gc.get_freeze_count() == frozen and gc.get_threshold() == thresholds
        found["settle_garbage_collector"]()  # what a gevent worker does once the app is loaded
        assert gc.get_freeze_count() > 10_000  # the app and its libraries, left out of every collection
        assert gc.get_threshold() == found["GC_THRESHOLDS"] and found["GC_THRESHOLDS"][0] > thresholds[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


# --- served as in production, on a fresh database ----------------------------------------------------


@pytest.fixture
def environment(tmp_path, key_store_uri) -> dict[str, str]:
    """The environment of a server on a fresh SQLite database, brought to the schema's version by
    `flask --app estimator db upgrade` as production does."""
    import os

    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("GUNICORN")},
        "DATABASE_URL": "sqlite:///" + str(tmp_path / "estimator.sqlite"),
        "SECRET_KEY": "workers-test-secret",
        "BALLOT_KEY_STORE_URI": key_store_uri,
        "LOGIN_RATE_LIMIT": "100000 per minute",
    }
    upgrade = subprocess.run(
        [str(BIN / "flask"), "--app", "estimator", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    return env


def gunicorn(*options: str) -> tuple[list[str], str]:
    """`gunicorn -w 2 [options] 'estimator:create_app()'` on a free port; the command and its URL."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "-w", "2", *options, "--bind", f"127.0.0.1:{port}"]
    return [*command, "estimator:create_app()"], f"http://127.0.0.1:{port}"


@pytest.mark.server
@pytest.mark.parametrize("how", ["gunicorn", "run.py"])
def test_a_clean_start_prints_no_traceback(environment, tmp_path, how):
    if how == "gunicorn":
        command, url = gunicorn()
    else:
        port = free_port()
        command, url = [sys.executable, "run.py", "--port", str(port)], f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = serve(command, environment, log, url + "/healthz", within=STARTING)
    time.sleep(1)  # what a worker starts in the background has started by now
    stop(process)
    text = log.read_text()
    assert process.returncode == 0, text
    assert "Using worker: gevent" in text and "GET /healthz" in text, text
    assert "Traceback" not in text and "failed with" not in text, text

"""gunicorn.conf.py: the production command as written, `gunicorn -w 4 'estimator:create_app()'`, run
from the project folder, gets gevent workers tuned for thousands of open event streams."""

import runpy
from typing import Any

from tests.server import ROOT

SETTINGS = ROOT / "gunicorn.conf.py"


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

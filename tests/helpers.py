"""Helpers shared by the tests: reading pages and JSON as a person would, races, browsers."""

import html
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar

import redis
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from estimator.extensions import db

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str = "",
    interval: float = 0.02,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """Ask predicate again and again until it returns something true, and return that; fail once
    timeout seconds have passed without it. A test waits for what it needs this way instead of
    sleeping a fixed time: as short as the machine allows, as long as a busy machine needs.
    `pause` waits between two looks (a Playwright page's wait_for_timeout, to let it handle events)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not within {timeout} s: {what or getattr(predicate, '__name__', predicate)}"
            )
        pause(interval)


def at_once(actions: Sequence[Callable[..., int]]) -> list[int]:
    """Run the requests in threads released together; their statuses in order."""
    # `...` because callers' lambdas bind their loop values as default arguments
    barrier = threading.Barrier(len(actions))
    results: dict[int, int] = {}

    def run(index: int, action: Callable[..., int]) -> None:
        barrier.wait()
        results[index] = action()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[index] for index in range(len(actions))]


def report(capsys, line: str) -> None:
    """Print a figure into the test log whatever pytest captures."""
    with capsys.disabled():
        print(f"\n    [{db.engine.dialect.name}] {line}", end="")


def logged_in_page(
    browser: Browser,
    server: str,
    nickname: str,
    contexts: list[BrowserContext],
    problems: list[str],
    viewport: ViewportSize | None = None,
) -> Page:
    """A new browser context logged in as nickname; its console errors are collected in problems."""
    page = watched_page(browser, server, nickname, contexts, problems, viewport)
    page.goto("/login")
    page.fill("#nickname", nickname)
    page.click("main [type=submit]")
    expect(page.get_by_role("heading", name="My groups")).to_be_visible()
    return page


def watched_page(
    browser: Browser,
    server: str,
    nickname: str,
    contexts: list[BrowserContext],
    problems: list[str],
    viewport: ViewportSize | None = None,
    cookies: CookieJar | None = None,
) -> Page:
    """A new page in a browser context of its own, with these cookies (a login made over HTTP, say);
    its console errors are collected in problems under nickname."""
    context = browser.new_context(base_url=server, viewport=viewport)
    contexts.append(context)
    if cookies is not None:
        context.add_cookies([{"name": c.name, "value": c.value or "", "url": server} for c in cookies])
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"{nickname}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"{nickname}: {error}"))
    return page


def text(response) -> str:
    """The page as sent."""
    return str(response.get_data(as_text=True))


def visible(response) -> str:
    """The page's text as a person reads it: tags dropped, entities read, white space collapsed."""
    words = " ".join(re.sub(r"<[^>]+>", " ", text(response)).split())
    return html.unescape(words).replace(" .", ".").replace(" ,", ",")


def group_json(client, group_id: int) -> dict[str, Any]:
    """`GET /api/groups/<id>` as the client sees it (a member: 200)."""
    response = client.get(f"/api/groups/{group_id}")
    assert response.status_code == 200, response.data
    state: dict[str, Any] = response.json
    return state


def issue_json(client, issue_id: int) -> dict[str, Any]:
    """`GET /api/issues/<id>` as the client sees it (a member: 200)."""
    response = client.get(f"/api/issues/{issue_id}")
    assert response.status_code == 200, response.data
    state: dict[str, Any] = response.json
    return state


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at url."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(binary: str, port: int, directory: Path, *options: str) -> subprocess.Popen[bytes]:
    """A throwaway Redis server on port that keeps nothing on disk (unless `options` say otherwise),
    answering before this returns."""
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *options],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not redis_answers(f"redis://127.0.0.1:{port}/0"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return process


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    """Stop the server this test started, by its pid."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

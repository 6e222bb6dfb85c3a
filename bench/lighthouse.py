"""Lighthouse's scores for the landing page, a group page and the room, on a phone and a desktop.

    python run.py --port 5055 &                      # the app as SPEC runs it
    npm install --prefix /tmp/lh lighthouse@13.5.0   # once
    python -m bench.lighthouse http://127.0.0.1:5055 --lighthouse /tmp/lh/node_modules/.bin/lighthouse

It logs in with a new nickname, makes a group with an issue and puts it in the room, then asks
Lighthouse (with Chromium, CHROME_PATH or /usr/bin/chromium) for each page and prints its four
category scores and the audits that lost points.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import tempfile
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, build_opener

CATEGORIES = ("performance", "accessibility", "best-practices", "seo")


def meeting(base: str) -> tuple[list[str], str]:
    """The pages to measure (paths) and the session's Cookie header."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))

    def page(path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        data = None
        if form is not None:
            token = re.search(
                r'name="csrf_token" value="([^"]+)"', page(path if path != "/groups" else "/")[1]
            )
            data = urlencode({"csrf_token": token.group(1) if token else "", **form}).encode()
        with opener.open(base + path, data) as response:
            return response.url, response.read().decode()

    page("/login", {"nickname": f"Lighthouse{secrets.randbelow(10**6)}"})
    url, _ = page("/groups", {"name": "Lighthouse team", "deck": "fibonacci"})
    group = url.rstrip("/").rsplit("/", 1)[-1]
    page(f"/groups/{group}/issues", {"key": "LH-1", "description": "Measure the room"})
    issue = re.search(r'formaction="/issues/(\d+)/start"', page(f"/groups/{group}")[1])
    if issue is None:
        raise SystemExit("the group page offers no Start button")
    with opener.open(f"{base}/groups/{group}") as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode())
    opener.open(
        f"{base}/issues/{issue.group(1)}/start",
        urlencode({"csrf_token": token.group(1) if token else ""}).encode(),
    )
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    return ["/", f"/groups/{group}", f"/groups/{group}/room"], cookie


def measure(lighthouse: str, url: str, cookie: str, desktop: bool) -> dict[str, Any]:
    """Lighthouse's report of one page."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        command = [
            lighthouse,
            url,
            "--quiet",
            f"--extra-headers={json.dumps({'Cookie': cookie})}",
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
            "--output=json",
            f"--output-path={report.name}",
            *(["--preset=desktop"] if desktop else []),
        ]
        environment = {**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")}
        subprocess.run(command, check=True, env=environment, capture_output=True)
        with open(report.name) as written:
            found: dict[str, Any] = json.load(written)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", help="the app's address, e.g. http://127.0.0.1:5055")
    parser.add_argument("--lighthouse", default="lighthouse", help="the lighthouse command")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    paths, cookie = meeting(base)
    for path in paths:
        for desktop in (False, True):
            report = measure(args.lighthouse, base + path, cookie, desktop)
            scores = " ".join(
                f"{name} {round(report['categories'][name]['score'] * 100)}" for name in CATEGORIES
            )
            print(f"{path:<16} {'desktop' if desktop else 'phone':<8} {scores}")
            for name, audit in report["audits"].items():
                if audit.get("scoreDisplayMode") == "metricSavings" and (audit.get("score") or 1) < 0.9:
                    print(f"    {name}: {audit.get('displayValue', '')}")


if __name__ == "__main__":
    main()

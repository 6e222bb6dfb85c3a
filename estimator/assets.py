"""Static files that load fast: named by their content, kept by browsers for a year, compressed.

Every link to a static file carries `v`, a digest of the file (or Bootstrap-Flask's version for
Bootstrap's files), so a file kept for a year is never a stale one: a new file is a new address.
The files are compressed by Flask-Compress (zstd, Brotli or gzip, as the browser accepts), each
once per process. Pages are not: their size would tell an onlooker on the network which card a
voter sees as theirs (pages pad it to one length), and compression next to a form token invites
guessing it byte by byte (BREACH).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_compress import Compress

#: The endpoints that serve static files: the app's and Bootstrap-Flask's.
STATIC_ENDPOINTS = {"static": None, "bootstrap.static": "Bootstrap-Flask"}
YEAR = 365 * 24 * 3600


class CompressedFiles:
    """Flask-Compress's cache: each static file compressed once per process, by address."""

    def __init__(self) -> None:
        self._kept: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self._kept.get(key)

    def set(self, key: str, value: bytes) -> None:
        self._kept[key] = value


class SessionAsideFromFiles(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except that a static file does not vary on its cookie.

    Flask adds `Vary: Cookie` to every answer whose request touched the session (Flask-Login's
    remember-cookie check touches it on every one), and a browser asks again for a file it keeps
    when the cookie it was fetched with has changed since: after a login, a language change.
    """

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        super().save_session(app, session, response)
        if request.endpoint in STATIC_ENDPOINTS:
            response.vary = [name for name in response.vary if name.lower() != "cookie"]


def register_assets(app: Flask) -> None:
    """Name static files by content, let browsers keep them, compress them."""
    app.session_interface = SessionAsideFromFiles()
    app.config.setdefault("COMPRESS_REGISTER", False)  # files only: see the module's docstring
    app.config.setdefault("COMPRESS_MIMETYPES", ["text/css", "text/javascript", "image/svg+xml"])
    # Each file is compressed once per process: harder settings cost a few milliseconds then and
    # save a tenth of Bootstrap's CSS on every first visit (232 kB: 26.6 kB as Brotli 9, 28 kB as
    # zstd 10, 31 kB as gzip; Brotli 11 would take 0.7 s).
    app.config.setdefault("COMPRESS_ALGORITHM", ["br", "zstd", "gzip"])
    app.config.setdefault("COMPRESS_BR_LEVEL", 9)
    app.config.setdefault("COMPRESS_ZSTD_LEVEL", 10)
    app.config.setdefault("COMPRESS_LEVEL", 9)
    app.config.setdefault("COMPRESS_CACHE_BACKEND", CompressedFiles)
    app.config.setdefault("COMPRESS_CACHE_KEY", lambda asked: asked.full_path)
    compress = Compress(app)
    app.url_defaults(add_file_version)

    @app.after_request
    def cache_and_compress(response: Response) -> Response:
        if request.endpoint not in STATIC_ENDPOINTS:
            return response
        # Only a file that was found: its name is then a safe path in the folder.
        if response.status_code == 200 and named_by_content(request):
            response.cache_control.public = True
            response.cache_control.max_age = YEAR
            response.cache_control.immutable = True
            response.cache_control.no_cache = None
        if response.status_code == 200 and response.is_streamed:
            # A file is sent as a stream, which Flask-Compress would compress anew each time:
            # read, it is compressed once and kept (CompressedFiles).
            response.direct_passthrough = False
            data = response.get_data()
            response.close()  # the file
            response.set_data(data)
        return compress.after_request(response)


def add_file_version(endpoint: str, values: dict[str, Any]) -> None:
    """`url_for` for a static file adds `v`: its content's digest, or its package's version."""
    if endpoint in STATIC_ENDPOINTS and "filename" in values and "v" not in values:
        values["v"] = file_version(endpoint, values["filename"])


def named_by_content(asked: Request) -> bool:
    """Whether the request names the file as it is now (an old or missing `v` is not kept long)."""
    filename = (asked.view_args or {}).get("filename", "")
    return bool(filename) and asked.args.get("v") == file_version(str(asked.endpoint), filename)


def file_version(endpoint: str, filename: str) -> str:
    """The digest of the app's static file, or the version of the package that serves it."""
    package = STATIC_ENDPOINTS[endpoint]
    if package is not None:
        return version(package)
    folder = current_app.static_folder or ""
    return _digest(str(Path(folder) / filename))


@cache
def _digest(path: str) -> str:
    """The first 12 hex digits of the file's SHA-256 ("-" when there is no such file)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "-"

"""Request bodies over the limit get 413, and bodies a response leaves unread are read to their end.

A body over MAX_CONTENT_LENGTH is refused with 413 before it is read; requests refused early (429,
a login redirect, 404) leave their bodies unread too.  If the server then closed the connection with the
body still arriving, the client would see a connection reset instead of the answer; reading and
discarding what is left, up to DISCARD_LIMIT, lets the 413 page or JSON reach it.  A body larger
than that, or sent in chunks without a length, is not read: the answer is sent and the connection
closed, and some clients then report a reset.
"""

from __future__ import annotations

from typing import BinaryIO, cast

from flask import Flask, Response, abort, request
from werkzeug.wsgi import LimitedStream

DISCARD_LIMIT = 24 * 1024 * 1024  # about twice the largest body a route accepts (the import's 11 MiB)
CHUNK = 64 * 1024


def refuse_oversized_body() -> None:
    """Answer 413 to any request whose stated length is over MAX_CONTENT_LENGTH, whatever its route.

    Forms already get it when they are read; this also covers routes that never read a body (the
    JSON API), which would otherwise answer as if the body had not been sent.
    """
    limit = request.max_content_length  # MAX_CONTENT_LENGTH, or what a route allows itself
    if limit is not None and (request.content_length or 0) > limit:
        abort(413)


def discard_unread_body(response: Response) -> Response:
    """Read what is left of this request's body, up to DISCARD_LIMIT, and throw it away."""
    length = request.content_length
    if not length or length > DISCARD_LIMIT:
        return response
    # The request's own stream knows how much was read already; without one nothing was.
    stream: BinaryIO | None = request.__dict__.get("stream")
    if stream is None:
        stream = cast(BinaryIO, LimitedStream(request.environ["wsgi.input"], length))
    try:
        while stream.read(CHUNK):
            pass
    except Exception:  # a client that went away or a stream that refuses more: nothing to save
        pass
    return response


def register_body_limits(app: Flask) -> None:
    """Install the hooks on the app."""
    app.before_request(refuse_oversized_body)
    app.after_request(discard_unread_body)

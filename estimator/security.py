"""Security headers on every response, and the settings for running behind a TLS proxy."""

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

# Scripts and styles come only from this site (no inline code at all); Bootstrap's icons are
# data: images. Pages cannot be framed, and forms post only here.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
HSTS = "max-age=31536000; includeSubDomains"


def register_security(app: Flask) -> None:
    """Send the security headers; behind a TLS proxy also Secure cookies, one trusted hop and HSTS."""
    https = bool(app.config.get("HTTPS"))
    if https:
        app.config.update(
            SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True, PREFERRED_URL_SCHEME="https"
        )
        # One proxy hop: its X-Forwarded-For and -Proto are believed, nothing further back.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]  # Flask's documented way

    app.after_request(lambda response: add_security_headers(response, https))


def add_security_headers(response: Response, https: bool) -> Response:
    """The security headers every response carries (those it does not set itself)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if response.mimetype == "text/html":
        # Pages may show the visitor's own card and carry form tokens: no cache may keep them.
        headers.setdefault("Cache-Control", "no-store")
    if https:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response

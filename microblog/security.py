"""Response headers that make the browser refuse what this site never does.

A small ``after_request`` rather than flask-talisman: the policy is one fixed set of headers,
and TLS ends at the proxy, so talisman's HTTPS redirects and per-view options would be unused.
"""

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

# Scripts, styles and everything else come from this site only; no inline code at all
# (Bootstrap's CSS draws its icons with data: images). Nothing may frame a page.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def init_app(app: Flask) -> None:
    headers = dict(HEADERS)
    if app.config["HTTPS_ONLY"]:
        headers["Strict-Transport-Security"] = HSTS

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        # A page's language follows Accept-Language and the language cookie, and its content
        # the session's cookie: no shared cache may hand one reader's page to another.
        response.vary.update(("Accept-Language", "Cookie"))
        return response

    if app.config["PROXY_COUNT"]:
        # Client addresses (for throttling and logs) come from the proxies' X-Forwarded-For.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_COUNT"])

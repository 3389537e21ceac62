"""What keeps the review page safe to open on untrusted data and, when asked for, beyond this machine.

* Every response carries a Content-Security-Policy that allows scripts, styles and images only from
  the page's own ``/static/`` files (no inline script, no inline style, no ``javascript:`` URL, no
  framing, forms only to itself), plus ``nosniff`` and ``no-referrer``.
* On loopback (the default) only requests whose ``Host`` is this page's own loopback address are
  served, so another site cannot reach it through a name that resolves to 127.0.0.1.
* Served beyond loopback (``--host`` given), every request needs the access token printed at start:
  opening ``/?token=...`` once sets a cookie (HttpOnly, SameSite=Strict) and drops the token from the
  address.
* A label is a POST carrying a form token only the page's own HTML holds, and the positions it was
  shown at, signed by the server (a page cannot claim other positions than those it was shown).
"""
from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
COOKIE = "duel_review_token"


def sign(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "\x1f".join(parts).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def verify(secret: bytes, signature: str, *parts: str) -> bool:
    return hmac.compare_digest(sign(secret, *parts), signature or "")


def loopback_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}


class Guard:
    """ASGI middleware: security headers on every response, the Host check on loopback, the access
    token beyond it."""

    def __init__(self, app, token: str | None, hosts: set[str] | None):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}

        async def send_guarded(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        if self.hosts is not None and headers.get("host", "").lower() not in self.hosts:
            return await _plain(send_guarded, 421, "this review page answers only at its own loopback address")
        if self.token:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if hmac.compare_digest(query.get("token", ""), self.token):
                rest = urlencode([(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
                                  if k != "token"])
                where = (scope.get("raw_path") or b"/") + (f"?{rest}".encode() if rest else b"")
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                return await _plain(send_guarded, 303, "", [(b"location", where), (b"set-cookie", cookie.encode())])
            jar = SimpleCookie()
            try:
                jar.load(headers.get("cookie", ""))
            except Exception:  # a malformed Cookie header is no token
                jar = SimpleCookie()
            given = jar[COOKIE].value if COOKIE in jar else ""
            if not hmac.compare_digest(given, self.token):
                return await _plain(send_guarded, 401, "this review page needs its access token: open the address "
                                                       "it printed when it started (…/?token=…) once in this browser")
        return await self.app(scope, receive, send_guarded)


async def _plain(send, status: int, text: str, extra: list | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})

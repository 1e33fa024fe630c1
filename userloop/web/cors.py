"""CORS for the collector paths only: any website may send events to them from a browser.

Trackers run on the customer's site, so their requests are cross-origin. The collector answers
preflights (``OPTIONS`` with ``Access-Control-Request-Method``) itself and adds
``Access-Control-Allow-Origin: *`` to every collector response, errors included. Credentials are
never allowed: collector requests authenticate with the write key, not cookies, and the read APIs
(``/api/...``) and the console get no CORS headers at all.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = "GET, POST, OPTIONS"
DEFAULT_ALLOW_HEADERS = "Content-Type, Content-Encoding, Authorization"
MAX_AGE = "86400"


class CollectorCORS:
    """ASGI middleware: CORS headers for the requests whose path ``is_collector`` accepts."""

    def __init__(self, app: ASGIApp, is_collector: Callable[[str], bool]):
        self.app = app
        self.is_collector = is_collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_collector(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(headers, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Access-Control-Allow-Origin"] = "*"
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, headers: Headers, send: Send) -> None:
        allow_headers = headers.get("access-control-request-headers") or DEFAULT_ALLOW_HEADERS
        response_headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", allow_headers.encode("latin-1")),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": response_headers})
        await send({"type": "http.response.body", "body": b""})

"""The operations endpoint: /metrics, /healthz, /readyz over a minimal HTTP/1.1 server.

Three read-only GET routes do not justify a web framework in a sidecar; this answers one
request per connection and closes it. It binds 127.0.0.1 by default and has no
authentication, so it shows nothing a neighbour should not see: Kafka's state as a
reason code, the raw error text only on `/readyz?verbose` (PROTOCOL §8). A request head
is bounded (`MAX_HEAD_BYTES`) and read under a timeout; an oversized or malformed one
gets a 4xx answer and a debug log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson

from sidecar.metrics import Metrics

log = logging.getLogger("sidecar.ops")

MAX_HEAD_BYTES = 8 * 1024  # request line and headers; GETs carry no body
_READ_TIMEOUT = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
Readiness = Callable[[], tuple[bool, dict[str, object]]]
ErrorText = Callable[[], str | None]


class OpsServer:
    def __init__(
        self, metrics: Metrics, readiness: Readiness, error_text: ErrorText = lambda: None
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.error_text = error_text
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD_BYTES)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def aclose(self, timeout: float = 1.0) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout)

    def route(self, method: str, target: str) -> tuple[int, str, bytes]:
        path, _, query = target.partition("?")
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            ready, body = self.readiness()
            if "verbose" in query.split("&") or query.startswith("verbose="):
                body = {**body, "kafka_error": self.error_text()}
            return (200 if ready else 503), "application/json", orjson.dumps(body) + b"\n"
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            try:
                request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
                method, target, _ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            except asyncio.LimitOverrunError:
                status, ctype, body = 431, "text/plain", b"request head too large\n"
            except TimeoutError:
                status, ctype, body = 408, "text/plain", b"request timeout\n"
            except ValueError:
                status, ctype, body = 400, "text/plain", b"bad request\n"
            else:
                status, ctype, body = self.route(method, target)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("ops request failed: %r", exc)
        finally:
            writer.close()

"""A blocking client for agents that are not async: the same `SidecarClient`, run on an
event loop in a background thread.

    with SyncSidecar(client="my-agent/1.0") as sidecar:
        sidecar.send(start_update)
        sidecar.send(delta_update)                 # blocks only for backpressure
        ack = sidecar.send(done_update).result(timeout=10)   # Kafka acknowledged

Every method may be called from any thread; frames are sent in the order the calls
return. `send` blocks while the sidecar pushes back, exactly as the async `send` waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sidecar_client.delivery import Ack, Delivery, DeliveryError
from sidecar_client.sidecar import Sendable, SidecarClient

T = TypeVar("T")


class SyncDelivery:
    """A `Delivery` seen from another thread."""

    def __init__(self, delivery: Delivery, loop: asyncio.AbstractEventLoop) -> None:
        self.delivery = delivery
        self._loop = loop

    def done(self) -> bool:
        return self.delivery.done()

    @property
    def error(self) -> DeliveryError | None:
        return self.delivery.error

    def result(self, timeout: float | None = None) -> Ack:
        """Block for the Ack, or raise the error; TimeoutError at the timeout."""
        future = asyncio.run_coroutine_threadsafe(self.delivery.wait(), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no outcome for {self.delivery!r} within {timeout} s") from None


class SyncSidecar:
    """Blocking facade of `SidecarClient` (same arguments); `close()` when done."""

    def __init__(self, socket_path: Path | str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sidecar-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        self.client: SidecarClient = self._call(self._make(socket_path, options))

    @staticmethod
    async def _make(socket_path: Path | str | None, options: dict[str, Any]) -> SidecarClient:
        return SidecarClient(socket_path, **options)  # its events belong to the loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def send(self, update: Sendable) -> SyncDelivery:
        """Send one update; blocks while the sidecar pushes back."""
        return SyncDelivery(self._call(self.client.send(update)), self._loop)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything is written and every awaited ack has its outcome."""
        self._call(self.client.flush(timeout))

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn()` on the client's loop (to read its counters consistently)."""

        async def run() -> T:
            return fn()

        return self._call(run())

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, wait up to `timeout` for owed acks, close, stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self.client.aclose(timeout))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncSidecar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

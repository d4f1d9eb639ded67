"""The server object: owns startup, serve and shutdown (after uvicorn's shape).

Topology: socket (source) -> stream table / coalescer (transform) -> Kafka sink, joined
by the sink's ordered queue, whose pending bytes pause socket reads past the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator

from sidecar.config import Config
from sidecar.errors import ExitCode, StartupError
from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.ops import OpsServer
from sidecar.preflight import preflight
from sidecar.sink.base import SinkBase
from sidecar.source.connection import Connection
from sidecar.source.hub import Hub
from sidecar.source.listener import open_unix_listener, release_socket_path
from sidecar.transform.table import StreamTable

log = logging.getLogger("sidecar.server")


def tune_gc() -> None:
    """For the serving process (`sidecar run`): everything built at start-up (modules, the
    loop, the producer) is permanent, so it is moved out of the collector's sight; the
    data path allocates mostly short-lived, acyclic objects (decoded lines, records), so
    young collections run every 20,000 allocations instead of 700. Measured at LLM pace
    (bench/profile.py), collections were about a third of the sidecar's CPU."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


class Server:
    def __init__(self, config: Config, *, sink: SinkBase | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self._sink = sink
        self.should_exit = asyncio.Event()
        self._forced = asyncio.Event()
        self.started = asyncio.Event()
        self.http_port: int | None = None
        self._listener: asyncio.Server | None = None
        self._ops: OpsServer | None = None
        self._sink_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        # Kafka's state as last logged (a reason code, None: fine), and an event set at
        # each change (tests wait on it).
        self.kafka_seen: str | None = None
        self.kafka_changed = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or `should_exit`); returns the process exit code."""
        with self.capture_signals():
            await self.startup()
            tune_gc()
            await self.should_exit.wait()
            return await self.shutdown()

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        preflight(cfg)
        if self._sink is None:
            from sidecar.sink.kafka import KafkaSink  # keeps aiokafka out of unit tests

            self._sink = KafkaSink(cfg, self.metrics)
        sink = self.sink
        sink.metrics = self.metrics
        sink.clock = loop.time
        self.table = StreamTable(
            clock=loop,
            emit=self._emit,
            flush_interval=cfg.flush_interval,
            max_buffered_chars=cfg.max_buffered_chars,
            closed_ttl=cfg.closed_stream_ttl,
            idle_timeout=cfg.stream_idle_timeout,
        )
        self.hub = Hub(cfg, self.metrics, self.table)
        sink.on_pressure = self.hub.set_paused
        m = self.metrics
        m.open_streams = lambda: self.table.open_count
        m.kafka_up = lambda: float(sink.kafka_reachable)
        m.pending_bytes = lambda: sink.pending_bytes
        m.backpressure = lambda: float(sink.paused)
        m.connections = lambda: len(self.hub.connections)
        m.max_pending_bytes = sink.max_pending_bytes
        # The port first: if it is taken, nothing else has started, and no socket file
        # is left behind.
        if cfg.http_port:
            self._ops = OpsServer(self.metrics, self.readiness)
            try:
                self.http_port = await self._ops.start(cfg.http_host, cfg.http_port)
            except OSError as exc:
                raise StartupError(
                    f"--http-port {cfg.http_port}: cannot listen on {cfg.http_host}:"
                    f"{cfg.http_port}: {exc.strerror or exc}"
                ) from None
        try:
            self._listener = await open_unix_listener(
                cfg.socket,
                cfg.socket_mode,
                lambda: Connection(self.hub),
                backlog=cfg.listen_backlog,
            )
        except BaseException:
            if self._ops is not None:
                await self._ops.aclose()
            raise
        self._sink_task = asyncio.create_task(sink.serve(), name="sidecar-sink")
        self._watch_task = asyncio.create_task(self._watch_kafka(), name="sidecar-kafka-watch")
        log.info(
            "listening on %s (mode %o), producing to %s at %s%s",
            cfg.socket,
            cfg.socket_mode,
            cfg.topic,
            cfg.bootstrap_servers,
            f", ops on {cfg.http_host}:{self.http_port}" if self._ops else "",
        )
        self.started.set()

    async def shutdown(self) -> int:
        """Stop accepting, end every stream, wait for Kafka under one deadline, then cancel."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        hub, sink = self.hub, self.sink
        hub.draining = True
        if self._listener is not None:
            self._listener.close()
        # Every line already read has been handled (handling is synchronous); now flush
        # and end what is still open, so each stream gets its one terminal.
        ended = self.table.end_all("shutdown")
        log.info("shutting down: ended %d open streams, waiting for Kafka", ended)
        code = ExitCode.OK
        flushed = asyncio.ensure_future(sink.flush())
        forced = asyncio.ensure_future(self._forced.wait())
        await asyncio.wait(
            {flushed, forced},
            timeout=max(0.0, deadline - loop.time()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        flushed.cancel()
        forced.cancel()
        if sink.pending_records:
            log.error(
                "shutdown deadline passed with %d records (%d bytes) not acknowledged by Kafka",
                sink.pending_records,
                sink.pending_bytes,
            )
            code = ExitCode.RUNTIME
        hub.close_all()
        await self._cancel_sink()
        self.table.close()
        if self._listener is not None:
            release_socket_path(self.config.socket, self._listener)
        if self._ops is not None:
            await self._ops.aclose()
        log.info("stopped (exit %d)", code)
        return code

    async def _cancel_sink(self) -> None:
        for task in (self._watch_task, self._sink_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def kafka_state(self) -> str | None:
        """None while Kafka takes records; else the reason code (PROTOCOL §8)."""
        sink = self.sink
        if sink.problem is not None and (not sink.kafka_up or not sink.problem.heals):
            return sink.problem.reason.value
        if not sink.kafka_reachable:
            return "not_acknowledging" if sink.kafka_up else "connecting"
        return None

    async def _watch_kafka(self, period: float = 1.0) -> None:
        """One log line at each change of Kafka's state, with the reason and how many
        records wait. Once a second: aiokafka retries an outage silently, so the state
        is read, not signalled."""
        while True:
            await asyncio.sleep(period)
            now, was = self.kafka_state(), self.kafka_seen
            if now == was or now == "connecting":
                continue
            sink = self.sink
            waiting = f"{sink.pending_records} records ({sink.pending_bytes} bytes) waiting"
            if now is None:
                log.info("Kafka is taking records again (was %s); %s", was, waiting)
            else:
                detail = sink.problem.detail if sink.problem is not None else ""
                heals = sink.problem is None or sink.problem.heals
                log.log(
                    logging.WARNING if heals else logging.ERROR,
                    "Kafka unavailable: %s%s; %s%s",
                    now,
                    f" ({detail})" if detail else "",
                    waiting,
                    "" if heals else "; not ready until the configuration is fixed",
                )
            self.kafka_seen = now
            self.kafka_changed.set()

    # -- wiring --------------------------------------------------------------------------

    @property
    def sink(self) -> SinkBase:
        assert self._sink is not None, "startup() creates the sink"
        return self._sink

    def _emit(self, record: Record) -> None:
        if record.terminal_reason is not None:
            self.metrics.streams_ended[record.terminal_reason] += 1
        self.sink.submit(record)

    def readiness(self) -> tuple[bool, dict[str, object]]:
        accepting = self._listener is not None and self._listener.is_serving()
        draining = self.hub.draining if self.started.is_set() else False
        kafka_up = self.sink.kafka_reachable
        problem = self.sink.problem
        # A problem waiting cannot heal (TLS, authentication, a missing topic) fails
        # readiness; an outage only with --require-kafka (PROTOCOL §8).
        misconfigured = problem is not None and not problem.heals
        ready = (
            accepting
            and not draining
            and not misconfigured
            and (kafka_up or not self.config.require_kafka)
        )
        body: dict[str, object] = {
            "ready": ready,
            "accepting": accepting,
            "draining": draining,
            "kafka": {
                "reachable": kafka_up,
                "last_error": self.kafka_state() or self.sink.last_error,
                "configuration_error": misconfigured,
                "required": self.config.require_kafka,
            },
            "pending_bytes": self.sink.pending_bytes,
            "open_streams": self.table.open_count,
        }
        return ready, body

    # -- signals: captured here and nowhere else -------------------------------------------

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        sigs = (signal.SIGTERM, signal.SIGINT)
        for sig in sigs:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        try:
            yield
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int) -> None:
        if self.should_exit.is_set():
            # A second signal: stop waiting for Kafka.
            self._forced.set()
            log.warning("second %s: not waiting for Kafka", signal.Signals(sig).name)
        else:
            log.info("received %s, draining", signal.Signals(sig).name)
        self.should_exit.set()

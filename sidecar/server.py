"""The server object: owns startup, serve and shutdown (after uvicorn's shape).

Topology: socket (source) -> stream table / coalescer (transform) -> Kafka sink, joined
by the sink's ordered queue, whose pending bytes pause socket reads past the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import platform
import secrets
import signal
import threading
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from sidecar import __version__
from sidecar.budget import Trimmer
from sidecar.config import RUN_FOLDER, Config
from sidecar.errors import ErrorCode, ExitCode, StartupError
from sidecar.metrics import Metrics
from sidecar.model import Record, ReplyTarget
from sidecar.ops import OpsServer
from sidecar.preflight import preflight
from sidecar.sink.base import SinkBase
from sidecar.source.connection import Connection
from sidecar.source.hub import Hub
from sidecar.source.listener import BoundSocket, open_unix_listener, release_socket_path
from sidecar.source.peer import Admission
from sidecar.source.session import Intake
from sidecar.transform.table import StreamTable

log = logging.getLogger("sidecar.server")


def build_info() -> dict[str, str]:
    """The labels of sidecar_build_info."""
    try:
        aiokafka = metadata.version("aiokafka")
    except metadata.PackageNotFoundError:  # an embedded server on another sink
        aiokafka = "none"
    return {"version": __version__, "python": platform.python_version(), "aiokafka": aiokafka}


def tune_gc() -> None:
    """For the serving process (`sidecar run`): everything built at start-up (modules, the
    loop, the producer) is permanent, so it is moved out of the collector's sight; the
    data path allocates mostly short-lived, acyclic objects (decoded lines, records), so
    young collections run every 20,000 allocations instead of 700. Measured at LLM pace
    (bench/profile.py), collections were about a third of the sidecar's CPU."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


# What shutdown may spend past its deadline cancelling the sink and closing the ops
# endpoint; the watchdog (`hard_deadline`) ends the process at the deadline plus one
# second whatever is still running.
_CLEANUP_SECONDS = 0.5
_WATCHDOG_GRACE = 0.9


class Server:
    def __init__(
        self, config: Config, *, sink: SinkBase | None = None, hard_deadline: bool = False
    ) -> None:
        """`hard_deadline`: after SIGTERM, a watchdog thread ends the process at
        --shutdown-timeout plus one second even if the event loop is stuck (the CLI
        sets it; an embedding test must not be killed)."""
        self.config = config
        self.metrics = Metrics()
        self._sink = sink
        self.hard_deadline = hard_deadline
        self.should_exit = asyncio.Event()
        self._forced = asyncio.Event()
        self.started = asyncio.Event()
        self.http_port: int | None = None
        # The `sidecar_instance` header: random per start, so a consumer can tell a
        # stream resumed after a restart (whose `seq` counts again from 0) from one
        # that repeats itself.
        self.instance = secrets.token_hex(8)
        self._listener: asyncio.Server | None = None
        self._bound: BoundSocket | None = None
        self._ops: OpsServer | None = None
        self._sink_task: asyncio.Task[None] | None = None
        self._deadline: float | None = None
        self._watch_task: asyncio.Task[None] | None = None
        # Kafka's state as last logged (a reason code, None: fine), and an event set at
        # each change (tests wait on it).
        self.kafka_seen: str | None = None
        self.kafka_changed = asyncio.Event()
        self._accept_logged = -1e9

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
        sink.instance = self.instance.encode()
        self.table = StreamTable(
            clock=loop,
            emit=sink.submit,  # straight to the outbox: no hop per record
            flush_interval=cfg.flush_interval,
            max_buffered_chars=cfg.max_buffered_chars,
            closed_ttl=cfg.closed_stream_ttl,
            max_closed_bytes=cfg.max_closed_stream_bytes,
            idle_timeout=cfg.stream_idle_timeout,
            failed_ttl=cfg.delivery_timeout_ms / 1000,
            budget=sink.budget,
            room=lambda: sink.has_room,
        )
        self.hub: Hub[Connection] = Hub()
        self.intake = Intake(
            self.table,
            self.metrics,
            max_frame_bytes=cfg.max_frame_bytes,
            end_on_disconnect=cfg.on_disconnect == "end",
        )
        self.intake.budget = sink.budget
        self.intake.max_partial_bytes = sink.max_pending_bytes // 2
        admission = Admission.of(cfg.allowed_uids, cfg.allowed_gids)
        sink.on_pressure = self._on_pressure
        sink.on_failed = self._on_failed
        sink.withdrawn = self.table.withdrawn
        m = self.metrics
        m.open_streams = lambda: self.table.open_count
        m.kafka_up = lambda: float(sink.kafka_reachable)
        m.pending_bytes = lambda: sink.pending_bytes
        m.backpressure = lambda: float(sink.paused)
        m.connections = lambda: len(self.hub.connections)
        m.max_pending_bytes = sink.max_pending_bytes
        m.paused_seconds = sink.paused_seconds
        m.build_info = build_info()
        budget = sink.budget
        budget.pending_records = lambda: sink.pending_bytes
        budget.reply_buffers = self.hub.reply_bytes
        budget.partition_cache = lambda: sink.cache_bytes
        budget.decode_templates = lambda: self.intake.decoder.held
        budget.windows = self.table.window_bytes
        budget.max_open_streams = cfg.max_open_stream_bytes
        budget.pressure = sink.check_pressure
        m.held_bytes = budget.held
        m.closed_forgotten_early = lambda: self.table.forgotten_early
        self.trimmer = Trimmer(budget)
        m.memory_trims = lambda: self.trimmer.trims
        loop.set_exception_handler(self._loop_exception)
        # The port first: if it is taken, nothing else has started, and no socket file
        # is left behind.
        if cfg.http_port:
            self._ops = OpsServer(self.metrics, self.readiness, self.kafka_error)
            try:
                self.http_port = await self._ops.start(cfg.http_host, cfg.http_port)
            except OSError as exc:
                raise StartupError(
                    f"--http-port {cfg.http_port}: cannot listen on {cfg.http_host}:"
                    f"{cfg.http_port}: {exc.strerror or exc}"
                ) from None
        try:
            self._listener, self._bound = await open_unix_listener(
                cfg.socket,
                cfg.socket_mode,
                lambda: Connection(
                    self.hub, self.intake, admission, max_reply_bytes=cfg.max_reply_bytes
                ),
                create_folder=cfg.socket.parent == RUN_FOLDER,
                backlog=cfg.listen_backlog,
            )
        except BaseException:
            if self._ops is not None:
                await self._ops.aclose()
            raise
        self._sink_task = asyncio.create_task(sink.serve(), name="sidecar-sink")
        self._watch_task = asyncio.create_task(self._watch_kafka(), name="sidecar-kafka-watch")
        log.info(
            "listening on %s (mode %o%s), producing to %s at %s%s; instance %s",
            cfg.socket,
            cfg.socket_mode,
            _admitting(admission),
            cfg.topic,
            cfg.bootstrap_servers,
            f", ops on {cfg.http_host}:{self.http_port}" if self._ops else "",
            self.instance,
        )
        self.started.set()

    async def shutdown(self) -> int:
        """Stop accepting, end every stream, wait for Kafka under one deadline, then cancel."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline or loop.time() + self.config.shutdown_timeout
        hub, sink = self.hub, self.sink
        self.intake.draining = True
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
            self._log_undelivered()
            code = ExitCode.RUNTIME
        hub.close_all()
        # Whatever Kafka does, stopping the producer gets only what is left of the
        # deadline (stopping it may wait for in-flight requests): PROTOCOL §6.
        cleanup_until = max(deadline, loop.time()) + _CLEANUP_SECONDS
        await self._cancel_sink(max(0.0, cleanup_until - loop.time()))
        self.table.close()
        if self._bound is not None:
            release_socket_path(self._bound)
        if self._ops is not None:
            await self._ops.aclose(max(0.05, cleanup_until - loop.time()))
        log.info("stopped (exit %d)", code)
        return code

    def _log_undelivered(self) -> None:
        sink = self.sink
        self.metrics.undelivered_at_shutdown = sink.pending_records
        log.error(
            "shutdown deadline passed with %d records (%d bytes) not acknowledged by Kafka",
            sink.pending_records,
            sink.pending_bytes,
        )

    async def _cancel_sink(self, timeout: float) -> None:
        watch = self._watch_task
        if watch is not None and not watch.done():
            watch.cancel()
        task = self._sink_task
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.warning("the Kafka producer did not stop within the deadline; leaving it")
                return
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's listener meets EMFILE/ENFILE/ENOMEM in accept(): it stops accepting
        for a second and reports here; open connections are unaffected. Counted, and
        logged once per second at most (it repeats while the shortage lasts)."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            reason = {
                errno.EMFILE: "fd_exhausted",
                errno.ENFILE: "fd_exhausted",
                errno.ENOMEM: "out_of_memory",
                errno.ENOBUFS: "out_of_memory",
            }.get(exc.errno or 0, "other")
            self.metrics.accept_errors[reason] += 1
            now = loop.time()
            if now - self._accept_logged >= 1.0:
                self._accept_logged = now
                log.error(
                    "cannot accept connections on %s: %s (%s); open connections go on, "
                    "retrying in a second",
                    self.config.socket,
                    reason,
                    exc.strerror,
                )
            return
        loop.default_exception_handler(context)

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
        is read, not signalled. The same tick gives freed heap back after a flood
        (sidecar.budget.Trimmer)."""
        while True:
            await asyncio.sleep(period)
            self.trimmer.check()
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

    def _on_pressure(self, paused: bool) -> None:
        """Backpressure from the sink. On resume, terminals of streams ended while paused
        go first (soon, outside the sink's settling); reads resume once they all went
        out and the sink still has room."""
        if paused:
            self.hub.set_paused(True)
        elif self.table.ending_count:
            asyncio.get_running_loop().call_soon(self._drain_ending)
        else:
            self.hub.set_paused(False)

    def _drain_ending(self) -> None:
        if self.table.drain_ending() and not self.sink.paused:
            self.hub.set_paused(False)

    def _on_failed(self, record: Record, reason: str) -> None:
        """A record finally failed: its stream ends there (`delivery_failed` terminal),
        and every connection that wrote into it hears so, whatever its acks (§5)."""
        writers = self.table.fail_stream(record, reason)
        if writers is None:
            return  # the stream ended at an earlier record already
        self.sink.stream_failed()
        told = {id(token.target) for token in record.acks}
        for writer, seq in writers:
            if id(writer) not in told:
                told.add(id(writer))
                _tell_failed(writer, seq, record, reason)

    def readiness(self) -> tuple[bool, dict[str, object]]:
        accepting = self._listener is not None and self._listener.is_serving()
        draining = self.intake.draining if self.started.is_set() else False
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

    def kafka_error(self) -> str | None:
        """The detail of Kafka's last problem, for `/readyz?verbose` only: it may name
        hosts and internals that an unauthenticated endpoint should not show."""
        problem = self.sink.problem
        return None if problem is None else problem.detail

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
            self._start_deadline()
        self.should_exit.set()

    def _start_deadline(self) -> None:
        timeout = self.config.shutdown_timeout
        self._deadline = asyncio.get_running_loop().time() + timeout
        if self.hard_deadline:
            watchdog = threading.Timer(timeout + _WATCHDOG_GRACE, self._watchdog)
            watchdog.daemon = True
            watchdog.start()

    def _watchdog(self) -> None:
        """The deadline passed and the loop has not finished shutting down: exit now."""
        with contextlib.suppress(Exception):
            self._log_undelivered()
            log.error("shutdown did not finish within --shutdown-timeout; exiting (exit 1)")
            for handler in logging.getLogger().handlers:
                handler.flush()
        os._exit(ExitCode.RUNTIME)


def _tell_failed(writer: ReplyTarget, seq: int, record: Record, reason: str) -> None:
    writer.send_error(
        seq,
        ErrorCode.DELIVERY_FAILED,
        f"{record.kind} record {record.stream_seq} of the stream was not delivered "
        f"({reason}); the stream is ended (delivery_failed)",
    )


def _admitting(admission: Admission) -> str:
    if not admission.uids and not admission.gids:
        return ", any peer"
    return f", peers uid {sorted(admission.uids)} gid {sorted(admission.gids)}"

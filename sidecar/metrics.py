"""Every metric the sidecar exports, defined in this one module.

The data path counts in plain integers (`metrics.frames["delta"] += 1`, a dict store, no
lock, no label lookup) and `Histo` buckets; a custom collector turns them into Prometheus
families only when /metrics is scraped. prometheus_client's own Counter costs a lock and
a few calls per increment, which at tens of thousands of deltas a second was a fifth of
the sidecar's CPU. The event loop is single-threaded, so plain integers are exact.

Each server gets its own registry, so tests and embedded servers never collide.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sidecar.budget import KINDS as HELD_KINDS
from sidecar.model import TerminalReason
from sidecar_client.protocol.replies import ErrorCode

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DELTAS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)

FRAME_TYPES = ("hello", "start", "delta", "full", "done", "invalid")
RECORD_TYPES = ("start", "delta", "full", "done")
# Label values come from the types that define them, so a new code or reason is a
# pre-initialised series without a second list to keep in step.
ERROR_CODES = tuple(code.value for code in ErrorCode)
ACCEPT_ERRORS = ("fd_exhausted", "out_of_memory", "other")
TERMINAL_REASONS: tuple[str, ...] = get_args(TerminalReason)


class Histo:
    """A histogram as plain numbers: `observe` is a bisect and two additions."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, as the exposition format wants them."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


class Metrics:
    def __init__(self) -> None:
        # Counters (monotonic), by label where they have one; every label pre-set to 0 so
        # a dashboard sees each series from the start.
        self.frames = dict.fromkeys(FRAME_TYPES, 0)
        self.errors = dict.fromkeys(ERROR_CODES, 0)
        self.produced = dict.fromkeys(RECORD_TYPES, 0)
        self.streams_ended = dict.fromkeys(TERMINAL_REASONS, 0)
        self.delivery_failures = 0
        self.producer_recoveries = 0
        self.replies_dropped = 0
        self.received_bytes = 0  # bytes read from the agents' sockets
        self.produced_bytes = 0  # record value bytes Kafka acknowledged
        # accept() failures by reason (out of file descriptors, ...): the listener retries.
        self.accept_errors = dict.fromkeys(ACCEPT_ERRORS, 0)
        self.connections_refused = 0
        # Records not acknowledged when the shutdown deadline passed (set once, at exit).
        self.undelivered_at_shutdown = 0
        # Histograms.
        self.deltas_per_record = Histo(_DELTAS_BUCKETS)
        self.first_delta_latency = Histo(_LATENCY_BUCKETS)
        self.delivery_latency = Histo(_LATENCY_BUCKETS)
        # Gauges: read from their owners at scrape time (the server wires them).
        self.open_streams: Callable[[], float] = lambda: 0
        self.connections: Callable[[], float] = lambda: 0
        self.pending_bytes: Callable[[], float] = lambda: 0
        self.backpressure: Callable[[], float] = lambda: 0
        self.kafka_up: Callable[[], float] = lambda: 0
        self.max_pending_bytes = 0  # the --max-pending-bytes bound (the server sets it)
        self.paused_seconds: Callable[[], float] = lambda: 0.0  # backpressure, in total
        self.build_info: dict[str, str] = {}  # the server sets it: version, python, ...
        # The memory budget's bytes by kind (sidecar.budget); every kind pre-set.
        self.held_bytes: Callable[[], dict[str, int]] = lambda: dict.fromkeys(HELD_KINDS, 0)
        # Closed streams forgotten before --closed-stream-ttl because their table reached
        # --max-closed-stream-bytes.
        self.closed_forgotten_early: Callable[[], int] = lambda: 0
        # malloc_trim calls after a flood (sidecar.budget.Trimmer counts them).
        self.memory_trims: Callable[[], int] = lambda: 0

        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        # process_* (CPU, memory, open fds, start time: the restart alert reads it),
        # python_info and python_gc_*.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> float:
        """The value /metrics shows for one sample (tests read metrics through this)."""
        for family in self.registry.collect():
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        raise KeyError(f"no sample {name} {labels}")


class _Collector(Collector):
    """Every family the sidecar exports, built from `Metrics` at scrape time."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield _counter(
            "sidecar_frames_received",
            "Lines received on the socket, by frame type (invalid for rejected lines).",
            "type",
            m.frames.items(),
        )
        yield _counter(
            "sidecar_errors", "Error replies, by code (PROTOCOL §3).", "code", m.errors.items()
        )
        yield _counter(
            "sidecar_records_produced",
            "Records acknowledged by Kafka, by update type.",
            "type",
            m.produced.items(),
        )
        yield _histogram(
            "sidecar_deltas_per_record",
            "Delta lines merged into one delta record.",
            m.deltas_per_record,
        )
        yield _gauge("sidecar_open_streams", "Streams open now.", m.open_streams())
        yield _counter(
            "sidecar_streams_ended",
            "Streams ended, by terminal_reason.",
            "reason",
            m.streams_ended.items(),
        )
        yield _gauge("sidecar_connections", "Socket connections open now.", m.connections())
        yield _gauge(
            "sidecar_pending_bytes",
            "Bytes of records accepted and not yet acknowledged by Kafka.",
            m.pending_bytes(),
        )
        held = m.held_bytes()
        family = GaugeMetricFamily(
            "sidecar_held_bytes",
            "Bytes held on behalf of clients, by kind: pending_records and partial_lines "
            "count against --max-pending-bytes, open_streams against "
            "--max-open-stream-bytes, closed_streams against --max-closed-stream-bytes; "
            "reply_buffers, partition_cache and decode_templates have bounds of their own.",
            labels=["kind"],
        )
        for kind in HELD_KINDS:
            family.add_metric([kind], held.get(kind, 0))
        yield family
        yield _counter(
            "sidecar_closed_streams_forgotten_early",
            "Closed streams forgotten before --closed-stream-ttl because the closed-stream "
            "table reached --max-closed-stream-bytes (a frame for one reopens it).",
            None,
            [("", m.closed_forgotten_early())],
        )
        yield _counter(
            "sidecar_memory_trims",
            "Times freed heap was given back to the system after held bytes fell well "
            "below their high point (glibc malloc_trim).",
            None,
            [("", m.memory_trims())],
        )
        yield _gauge(
            "sidecar_max_pending_bytes",
            "The --max-pending-bytes bound on pending records and partial lines together: "
            "past it socket reads pause (backpressure).",
            m.max_pending_bytes,
        )
        yield _gauge(
            "sidecar_backpressure",
            "1 while socket reads are paused because held bytes passed their limit.",
            m.backpressure(),
        )
        yield _histogram(
            "sidecar_first_delta_latency_seconds",
            "From reading a stream's first delta to Kafka acknowledging its record.",
            m.first_delta_latency,
        )
        yield _histogram(
            "sidecar_kafka_delivery_latency_seconds",
            "From handing a record to the Kafka sink to its acknowledgement.",
            m.delivery_latency,
        )
        yield _counter(
            "sidecar_delivery_failures",
            "Records Kafka finally refused or that timed out (delivery_failed); each ends "
            "its stream with a delivery_failed terminal (sidecar_streams_ended).",
            None,
            [("", m.delivery_failures)],
        )
        yield _counter(
            "sidecar_producer_recoveries",
            "Times the Kafka producer was recreated to resend unacknowledged records.",
            None,
            [("", m.producer_recoveries)],
        )
        yield _gauge(
            "sidecar_kafka_up", "1 while the last contact with Kafka succeeded.", m.kafka_up()
        )
        info = GaugeMetricFamily(
            "sidecar_build_info",
            "Always 1; the labels say which sidecar runs: version, python, aiokafka.",
            labels=sorted(m.build_info),
        )
        info.add_metric([m.build_info[k] for k in sorted(m.build_info)], 1)
        yield info
        yield _counter(
            "sidecar_received_bytes",
            "Bytes read from the agents' socket connections.",
            None,
            [("", m.received_bytes)],
        )
        yield _counter(
            "sidecar_produced_bytes",
            "Bytes of record values acknowledged by Kafka (before compression).",
            None,
            [("", m.produced_bytes)],
        )
        yield CounterMetricFamily(
            "sidecar_backpressure_seconds",
            "Time socket reads spent paused because held bytes passed their limit.",
            value=m.paused_seconds(),
        )
        yield _counter(
            "sidecar_accept_errors",
            "Connections the socket could not accept, by reason (fd_exhausted: out of file "
            "descriptors); the listener retries and open connections are unaffected.",
            "reason",
            m.accept_errors.items(),
        )
        yield _counter(
            "sidecar_connections_refused",
            "Connections closed at once: peer not in --allowed-uids/--allowed-gids, or its "
            "credentials unreadable.",
            None,
            [("", m.connections_refused)],
        )
        yield _gauge(
            "sidecar_undelivered_at_shutdown",
            "Records not acknowledged by Kafka when the shutdown deadline passed.",
            m.undelivered_at_shutdown,
        )
        yield _counter(
            "sidecar_replies_dropped",
            "Replies dropped because the client did not read them (PROTOCOL §3).",
            None,
            [("", m.replies_dropped)],
        )


def _counter(
    name: str, doc: str, label: str | None, values: Iterable[tuple[str, int]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label] if label else None)
    for value_label, value in values:
        family.add_metric([value_label] if label else [], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, h: Histo) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=h.buckets(), sum_value=h.sum)

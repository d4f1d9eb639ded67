"""The client-side commands `send`, `tail` and `bench` (registered in sidecar.cli).

Each is a thin typer wrapper around an async core that tests call directly: `run_send`,
`run_tail` (against any `RecordSource`; `tail` gives it a Kafka consumer) and
`loadgen.run_load`. Kafka is imported only by `tail`, so `sidecar --help` stays quick.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, BinaryIO, Protocol, TextIO

import orjson
import typer

from sidecar.config import SocketPathSettings, TailSettings
from sidecar.model import AckMode
from sidecar.options import with_settings
from sidecar.runtime import run
from sidecar_client.client import expects_ack, open_client
from sidecar_client.reassemble import Reassembler, Violation

if TYPE_CHECKING:
    from sidecar.sink.kafka import ConsumedRecord


def _opt(help: str, *decls: str, **kwargs: Any) -> Any:
    return typer.Option(*decls, help=help, show_default=True, **kwargs)


class InputError(Exception):
    """The lines to send could not be read."""


AcksOpt = Annotated[
    AckMode,
    _opt(
        "Acks to ask for in a hello: none (errors only), terminal (one per terminal, once "
        "Kafka has it) or all (one per accepted line)."
    ),
]
EXIT_INTERRUPTED = 130
CHUNK = 1 << 16


def _run(coro: Coroutine[Any, Any, int], *, use_uvloop: bool = False) -> int:
    try:
        return run(coro, use_uvloop=use_uvloop)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Standard output closed early (`sidecar tail | head`): stop quietly, and keep
        # the interpreter's final flush from complaining about it.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# -- send --------------------------------------------------------------------------------


@with_settings(SocketPathSettings)
def send(
    settings: SocketPathSettings,
    file: Annotated[
        Path | None,
        typer.Argument(help="NDJSON file to send; standard input when absent or '-'."),
    ] = None,
    acks: AcksOpt = "none",
    client: Annotated[
        str | None, _opt("Client name to send in a hello; without it and --acks, no hello is sent.")
    ] = None,
    wait: Annotated[
        float, _opt("How long to wait for outstanding replies after the input ends, in seconds.")
    ] = 10.0,
) -> None:
    """Send NDJSON lines to the sidecar's socket and print the replies.

    Sends FILE's lines (standard input when FILE is absent or -) in order and prints
    every reply as a JSON line. Exits 1 on an error reply or a missing ack.
    """
    socket = settings.socket
    if file is None or str(file) == "-":
        code = _run(run_send(sys.stdin.buffer, socket, acks=acks, client=client, wait=wait))
    else:
        try:
            source = file.open("rb")
        except OSError as exc:
            typer.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
        with source:
            code = _run(run_send(source, socket, acks=acks, client=client, wait=wait))
    raise typer.Exit(code)


async def run_send(
    source: BinaryIO,
    socket: Path | str,
    *,
    acks: AckMode = "none",
    client: str | None = None,
    wait: float = 10.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Send `source`'s lines in order, printing replies as they arrive; then wait up to
    `wait` seconds for the replies still owed (acks asked for) and for the sidecar to
    close the connection. Returns the exit code: 1 if any error reply or missing ack."""
    out = out or sys.stdout
    err = err or sys.stderr
    expected: set[int] = set()  # seqs owed an ack, not answered yet
    early: set[int] = set()  # answered before their line's bookkeeping was done
    registered = 0  # the last seq whose expectation is recorded
    settled = asyncio.Event()  # nothing owed, or the connection is gone
    settled.set()

    try:
        async with open_client(socket, client=client, acks=acks) as conn:

            async def print_replies() -> None:
                async for reply in conn.replies():
                    out.write(orjson.dumps(reply).decode() + "\n")
                    out.flush()
                    seq = reply.get("seq")
                    if seq in expected:
                        expected.discard(seq)
                        if not expected:
                            settled.set()
                    elif isinstance(seq, int) and seq > registered:
                        early.add(seq)
                settled.set()

            printer = asyncio.create_task(print_replies())
            try:
                async for lines in _read_lines(source):
                    seqs = await conn.send_many(lines)
                    # conn.acks is read after sending: a hello on line 1 may have set it.
                    for seq, line in zip(seqs, lines, strict=True):
                        if expects_ack(conn.acks, line):
                            if seq in early:
                                early.discard(seq)
                            else:
                                expected.add(seq)
                    registered = conn.seq
                    if expected:
                        settled.clear()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + wait
                if not settled.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(settled.wait(), wait)
                closed_early = conn.closed
                # Only now: the sidecar closes on end of input, dropping replies owed.
                conn.finish()
                await conn.wait_closed(max(0.0, deadline - loop.time()))
            finally:
                await conn.aclose()
                await printer
            errors = conn.errors
    except OSError as exc:  # connecting, or the sidecar went away mid-way
        err.write(f"error: {socket}: {exc.strerror or exc}\n")
        return 1
    except InputError as exc:
        err.write(f"error: {exc}\n")
        return 1
    if expected:
        first = ", ".join(str(s) for s in sorted(expected)[:10])
        when = "before the sidecar closed the connection" if closed_early else f"within {wait:g}s"
        err.write(f"error: no reply {when} for {len(expected)} lines (seq {first})\n")
    return 1 if errors or expected else 0


async def _read_lines(source: IO[bytes]) -> AsyncIterator[list[bytes]]:
    """The non-blank lines of `source`, a chunk's worth at a time, read by a thread so a
    slow stdin never stalls the replies, and through a small queue so a large file is
    never held whole."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=4)
    stop = threading.Event()
    read = getattr(source, "read1", source.read)  # read1: what is there, not a full chunk

    def put(item: bytes | BaseException | None) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return False  # the loop has closed, or is closing: nobody wants the rest
        return not stop.is_set()

    def reader() -> None:
        try:
            while data := read(CHUNK):
                if not put(data):
                    return
        except (OSError, ValueError) as exc:  # handed to the event loop to raise there
            put(InputError(f"cannot read the input: {exc}"))
            return
        put(None)

    # A daemon thread, not the default executor: a read blocked on a terminal must not
    # keep the process alive after Ctrl-C.
    threading.Thread(target=reader, name="sidecar-send-input", daemon=True).start()
    partial: list[bytes] = []  # the current line's pieces: a long line is joined once
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            if b"\n" not in item:
                partial.append(item)
                continue
            *lines, rest = item.split(b"\n")
            lines[0] = b"".join([*partial, lines[0]])
            partial = [rest]
            if batch := [ln for ln in lines if ln.strip()]:
                yield batch
        if (last := b"".join(partial)).strip():
            yield [last]  # a last line without its newline
    finally:
        stop.set()
        while not queue.empty():  # unblock the thread if it waits for room
            queue.get_nowait()


# -- tail --------------------------------------------------------------------------------


class RecordSource(Protocol):
    """What `run_tail` reads (sidecar.sink.kafka.TopicReader, or a fake in tests)."""

    async def end_offsets(self) -> dict[int, int]: ...

    async def position(self, partition: int) -> int: ...

    async def poll(self, timeout_ms: int = ..., max_records: int = ...) -> list[ConsumedRecord]: ...


@with_settings(TailSettings)
def tail(
    settings: TailSettings,
    reassemble: Annotated[
        bool, _opt("Print each stream's assembled content when its terminal arrives.")
    ] = False,
    from_beginning: Annotated[
        bool, _opt("Start at the oldest record, or at the end.", "--from-beginning/--latest")
    ] = True,
    follow: Annotated[
        bool, _opt("Keep waiting for new records until Ctrl-C; without it, stop at the end.")
    ] = False,
    max_records: Annotated[int, _opt("Stop after this many records; 0 means no limit.")] = 0,
    timeout: Annotated[float, _opt("Stop after this many seconds; 0 means no limit.")] = 0.0,
) -> None:
    """Print the topic's records, one JSON line each.

    With --reassemble, prints each stream's assembled content instead. Records that
    break the order of the contract are reported on standard error, and the exit
    code is then 1.
    """
    from sidecar.logs import setup_logging
    from sidecar.sink.kafka import inspect_topic, open_consumer

    setup_logging(settings.log_level, settings.log_format)
    from sidecar.sink.problems import KafkaUnusable

    async def main() -> int:
        # Looked up first without creating it: a consumer's own metadata requests
        # would create a missing topic on a broker that auto-creates.
        try:
            await inspect_topic(settings, 10.0)
        except KafkaUnusable as exc:
            typer.echo(f"error: {settings.topic}: {exc.problem}", err=True)
            return 1
        async with open_consumer(
            settings.bootstrap_servers,
            settings.topic,
            from_beginning=from_beginning,
            settings=settings,
        ) as r:
            return await run_tail(
                r,
                reassemble=reassemble,
                from_start=from_beginning,
                follow=follow,
                max_records=max_records,
                timeout=timeout or None,
            )

    try:
        code = _run(main())
    except Exception as exc:  # Kafka unreachable, unknown topic...: the message is the point
        typer.echo(f"error: {settings.bootstrap_servers} / {settings.topic}: {exc!r}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


async def run_tail(
    reader: RecordSource,
    *,
    reassemble: bool = False,
    from_start: bool = True,
    follow: bool = False,
    max_records: int = 0,
    timeout: float | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print records (or streams) from `reader`; without `follow`, stop once every
    partition is read up to its end as of the start. Returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr

    def violation(v: Violation) -> None:
        err.write(f"violation: {v}\n")

    asm = Reassembler(from_start=from_start, keep_text=reassemble, on_violation=violation)
    seen = 0
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            ends = {} if follow else await reader.end_offsets()
            if not follow and not ends:
                err.write("error: the topic has no partitions (does it exist?)\n")
                return 1
            while seen < (max_records or float("inf")):
                for p in list(ends):
                    # Position, not the last offset seen: deleted or compacted records,
                    # and control records, leave offsets that are never delivered.
                    if await reader.position(p) >= ends[p]:
                        del ends[p]
                if not (follow or ends):
                    break
                for rec in await reader.poll(200, max_records - seen if max_records else 10_000):
                    seen += 1
                    _print_record(rec, asm, reassemble, out)
                out.flush()
    except TimeoutError:
        timed_out = not follow
        if timed_out:
            err.write(f"stopped by --timeout before the end, after {seen} records\n")
    out.flush()
    if reassemble and asm.open:
        err.write(f"{len(asm.open)} streams have no terminal yet\n")
    return 1 if asm.violations or timed_out else 0


def _print_record(rec: ConsumedRecord, asm: Reassembler, reassemble: bool, out: TextIO) -> None:
    value: Any = None
    if rec.value is not None:
        try:
            value = orjson.loads(rec.value)
        except orjson.JSONDecodeError:
            value = rec.value.decode("utf-8", "replace")
    finished = asm.feed(
        value if isinstance(value, dict) else None,
        rec.headers,
        key=rec.key,
        partition=rec.partition,
        offset=rec.offset,
    )
    if not reassemble:
        line = {
            "partition": rec.partition,
            "offset": rec.offset,
            "timestamp_ms": rec.timestamp_ms,
            "key": None if rec.key is None else rec.key.decode("utf-8", "replace"),
            "headers": {k: v.decode("utf-8", "replace") for k, v in rec.headers.items()},
            "value": value,
        }
        out.write(orjson.dumps(line).decode() + "\n")
    elif finished is not None:
        out.write(orjson.dumps(finished.to_json()).decode() + "\n")


# -- bench -------------------------------------------------------------------------------


@with_settings(SocketPathSettings)
def bench(
    settings: SocketPathSettings,
    streams: Annotated[int, _opt("Number of streams written at once.", min=1)] = 100,
    deltas: Annotated[int, _opt("Text deltas written per stream.", min=0)] = 200,
    delta_chars: Annotated[int, _opt("Characters of text in each delta.", min=0)] = 8,
    connections: Annotated[int, _opt("Socket connections the streams are spread over.", min=1)] = 4,
    rate: Annotated[
        float, _opt("Deltas per second per stream; 0 writes as fast as possible.", min=0)
    ] = 0.0,
    acks: Annotated[
        AckMode, _opt("Acks to ask for: none, terminal (one per stream) or all (one per line).")
    ] = "terminal",
    ack_timeout: Annotated[
        float, _opt("How long to wait for acks after the last line, in seconds.")
    ] = 60.0,
    as_json: Annotated[bool, _opt("Print the result as one JSON object.", "--json")] = False,
    use_uvloop: Annotated[
        bool,
        _opt(
            "Run the load generator on uvloop when it is installed; --no-uvloop uses "
            "asyncio's own loop.",
            "--uvloop/--no-uvloop",
        ),
    ] = True,
) -> None:
    """Load a running sidecar with synthetic streams and report.

    Reports throughput and the latency of terminal acks. Exits 1 on an error reply or
    a missing ack.
    """
    from sidecar.tools.loadgen import LoadSpec, run_load

    socket = settings.socket
    spec = LoadSpec(streams, deltas, delta_chars, connections, rate, acks, ack_timeout=ack_timeout)

    async def main() -> int:
        try:
            result = await run_load(socket, spec)
        except OSError as exc:
            typer.echo(f"error: {socket}: {exc.strerror or exc}", err=True)
            return 1
        typer.echo(orjson.dumps(result.summary()).decode() if as_json else result.report())
        return 0 if result.ok else 1

    raise typer.Exit(_run(main(), use_uvloop=use_uvloop))

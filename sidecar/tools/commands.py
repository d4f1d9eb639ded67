"""The client-side commands: `send`, `tail` and `bench` (registered in sidecar.cli)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

SOCKET_HELP = "Unix socket path."
Socket = Annotated[Path, typer.Option(envvar="SIDECAR_SOCKET", help=SOCKET_HELP)]
Bootstrap = Annotated[
    str, typer.Option(envvar="SIDECAR_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")
]
Topic = Annotated[str, typer.Option(envvar="SIDECAR_TOPIC", help="Kafka topic.")]


def send(
    file: Annotated[
        str, typer.Argument(help="NDJSON file to send; '-' or absent: standard input.")
    ] = "-",
    socket: Socket = Path("/tmp/sidecar.sock"),
    acks: Annotated[
        str, typer.Option(help="Ask for acks (none, terminal, all): sends a hello first.")
    ] = "none",
    wait: Annotated[
        float, typer.Option(help="After the input, wait this long for replies, seconds.")
    ] = 10.0,
) -> None:
    """Send NDJSON lines to the sidecar's socket and print every reply."""
    code = asyncio.run(_send(file, socket, acks, wait))
    raise typer.Exit(code)


async def _send(file: str, socket: Path, acks: str, wait: float) -> int:
    from sidecar.tools.client import open_client

    source = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115, ASYNC230 - a local file, read line by line
    outstanding: set[int] = set()
    errors = 0
    try:
        async with open_client(socket, acks=acks) as client:
            printed = 0

            def flush_replies() -> None:
                nonlocal printed, errors
                items = list(client.replies.values())
                for reply in items[printed:]:
                    sys.stdout.write(orjson.dumps(reply).decode() + "\n")
                    errors += reply["type"] == "error"
                printed = len(items)

            for raw in source:  # streamed: a large file is never read whole
                if not raw.strip():
                    continue
                seq = await client.send(raw)
                if acks == "all" or (acks == "terminal" and _is_terminal(raw)):
                    outstanding.add(seq)
                flush_replies()
            await client.finish()
            try:
                if outstanding:
                    await client.wait_replies(outstanding, timeout=wait)
                else:
                    await client.wait_replies({client.seq + 1}, timeout=wait)  # until closed
            except TimeoutError:
                pass
            flush_replies()
            missing = outstanding - client.replies.keys()
            if missing:
                print(f"error: no reply for lines {sorted(missing)[:10]}", file=sys.stderr)
                return 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    return 1 if errors else 0


def _is_terminal(raw: bytes) -> bool:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("type") in ("full", "done")


def tail(
    bootstrap_servers: Bootstrap = "localhost:9092",
    topic: Topic = "task-updates",
    reassemble: Annotated[
        bool, typer.Option(help="Print each finished stream's assembled content instead.")
    ] = False,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning/--latest", help="Start at the oldest record.")
    ] = True,
    follow: Annotated[
        bool, typer.Option(help="Keep waiting for new records (else stop at the end).")
    ] = False,
    max_records: Annotated[
        int, typer.Option(help="Stop after this many records; 0: no limit.")
    ] = 0,
) -> None:
    """Consume the topic and print its records, one JSON line each."""
    code = asyncio.run(
        _tail(bootstrap_servers, topic, reassemble, from_beginning, follow, max_records)
    )
    raise typer.Exit(code)


async def _tail(
    bootstrap: str, topic: str, reassemble: bool, from_beginning: bool, follow: bool, limit: int
) -> int:
    from sidecar.sink.kafka import open_consumer
    from sidecar.tools.reassemble import Reassembler

    asm = Reassembler()
    seen = 0
    async with open_consumer(bootstrap, topic, from_beginning=from_beginning) as reader:
        ends = {} if follow else await reader.end_offsets()
        remaining = {p: end for p, end in ends.items() if end > 0}
        if not follow and not remaining:
            return 0
        async for rec in reader.records():
            seen += 1
            headers = dict(rec.headers)
            value: Any = orjson.loads(rec.value) if rec.value else None
            if reassemble:
                done = asm.feed(value or {}, headers)
                if done is not None:
                    out: dict[str, Any] = {
                        "task_id": done.task_id,
                        "message_id": done.message_id,
                        "terminal": done.terminal,
                        "terminal_reason": done.reason,
                        "records": done.records,
                        "deltas": done.deltas,
                        "text": done.channels,
                    }
                    if done.content is not None:
                        out["content"] = done.content
                    print(orjson.dumps(out).decode(), flush=True)
            else:
                print(
                    orjson.dumps(
                        {
                            "partition": rec.partition,
                            "offset": rec.offset,
                            "timestamp_ms": rec.timestamp_ms,
                            "key": rec.key.decode() if rec.key else None,
                            "headers": {k: v.decode(errors="replace") for k, v in headers.items()},
                            "value": value,
                        }
                    ).decode(),
                    flush=True,
                )
            if limit and seen >= limit:
                break
            if not follow and rec.offset + 1 >= remaining.get(rec.partition, 0):
                remaining.pop(rec.partition, None)
                if not remaining:
                    break
    for v in asm.violations:
        print(f"order violation: {v}", file=sys.stderr)
    if reassemble and asm.open:
        print(f"{len(asm.open)} streams have no terminal yet", file=sys.stderr)
    return 1 if asm.violations else 0


def bench(
    socket: Socket = Path("/tmp/sidecar.sock"),
    streams: Annotated[int, typer.Option(help="Concurrent streams.")] = 100,
    deltas: Annotated[int, typer.Option(help="Deltas per stream.")] = 200,
    delta_chars: Annotated[int, typer.Option(help="Characters per delta.")] = 8,
    connections: Annotated[int, typer.Option(help="Socket connections.")] = 4,
    rate: Annotated[float, typer.Option(help="Deltas/s per stream; 0: as fast as possible.")] = 0.0,
    acks: Annotated[str, typer.Option(help="none, terminal or all.")] = "terminal",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Drive a running sidecar with synthetic streams; report throughput and latency."""
    from sidecar.tools.loadgen import LoadSpec, run_load

    spec = LoadSpec(streams, deltas, delta_chars, connections, rate, acks)
    report = asyncio.run(run_load(socket, spec)).summary()
    if as_json:
        print(orjson.dumps(report).decode())
    else:
        for k, v in report.items():
            print(f"{k:>22}: {v}")
    raise typer.Exit(1 if report["errors"] else 0)

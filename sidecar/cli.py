"""The `sidecar` command line: parses options (flags win over SIDECAR_* variables) into
a Config and hands it to the server or a tool."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from sidecar import __version__, runtime
from sidecar.config import DEFAULT_SOCKET, Config

app = typer.Typer(
    name="sidecar",
    help="Kafka producer sidecar for AI agents: agentex updates in on a Unix socket, "
    "coalesced, ordered records out to Kafka.",
    epilog="The contract (socket, frames, replies, Kafka records and headers, lifecycle, "
    "exit codes, HTTP endpoint) is docs/protocol.md in the sidecar source repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USAGE = 2


def _opt(env: str, help: str, *decls: str) -> Any:
    return typer.Option(*decls, envvar=f"SIDECAR_{env}", help=help, show_default=True)


# Options shared by several commands.
SocketOpt = Annotated[Path, _opt("SOCKET", "Unix socket path.")]
BootstrapOpt = Annotated[
    str, _opt("BOOTSTRAP_SERVERS", "Kafka bootstrap servers, host:port[,host:port...].")
]
TopicOpt = Annotated[str, _opt("TOPIC", "Kafka topic.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sidecar {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Kafka producer sidecar for AI agents."""


def _setup_logging(level: str, fmt: str) -> None:
    if fmt == "json":
        f = '{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
    else:
        f = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=f, stream=sys.stderr, force=True)
    # aiokafka logs every failed reconnect at ERROR; the sink reports Kafka's state itself.
    if level != "debug":
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _config(**values: Any) -> Config:
    try:
        return Config(**values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = "--" + "-".join(str(p) for p in err["loc"]).replace("_", "-")
            typer.echo(f"error: {loc}: {err['msg']}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _mode(value: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an octal file mode such as 0660") from None


def _ids(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{option}: {value!r} is not a comma list of numbers") from None


@app.command()
def run(
    socket: SocketOpt = DEFAULT_SOCKET,
    socket_mode: Annotated[str, _opt("SOCKET_MODE", "Socket file mode, octal.")] = "0660",
    allowed_uids: Annotated[
        str,
        _opt("ALLOWED_UIDS", "Peer uids that may connect, comma list (default: anyone)."),
    ] = "",
    allowed_gids: Annotated[
        str,
        _opt("ALLOWED_GIDS", "Peer gids (primary or supplementary) that may connect, comma list."),
    ] = "",
    topic: TopicOpt = "task-updates",
    bootstrap_servers: BootstrapOpt = "localhost:9092",
    flush_interval_ms: Annotated[
        int,
        _opt("FLUSH_INTERVAL_MS", "Coalescing window per stream, milliseconds; 0 disables it."),
    ] = 50,
    max_buffered_chars: Annotated[
        int, _opt("MAX_BUFFERED_CHARS", "Flush a stream once this many text chars are pending.")
    ] = 128,
    max_frame_bytes: Annotated[
        int, _opt("MAX_FRAME_BYTES", "Longest accepted line, bytes (longer: frame_too_large).")
    ] = 1024 * 1024,
    max_reply_bytes: Annotated[
        int, _opt("MAX_REPLY_BYTES", "Unread replies kept per client, bytes; then dropped.")
    ] = 1024 * 1024,
    closed_stream_ttl: Annotated[
        float, _opt("CLOSED_STREAM_TTL", "Reject frames for a closed stream this long, seconds.")
    ] = 600.0,
    stream_idle_timeout: Annotated[
        float, _opt("STREAM_IDLE_TIMEOUT", "End a stream with no frame for this long, seconds.")
    ] = 300.0,
    on_disconnect: Annotated[
        str, _opt("ON_DISCONNECT", "end: end a client's open streams when it disconnects; keep.")
    ] = "end",
    shutdown_timeout: Annotated[
        float, _opt("SHUTDOWN_TIMEOUT", "Deadline for draining to Kafka on SIGTERM, seconds.")
    ] = 25.0,
    max_pending_bytes: Annotated[
        int, _opt("MAX_PENDING_BYTES", "Unacknowledged bytes before socket reads pause, bytes.")
    ] = 64 * 1024 * 1024,
    linger_ms: Annotated[int, _opt("LINGER_MS", "Producer linger, milliseconds.")] = 5,
    compression: Annotated[
        str, _opt("COMPRESSION", "Producer compression: none, gzip, snappy, lz4, zstd.")
    ] = "none",
    max_batch_bytes: Annotated[
        int, _opt("MAX_BATCH_BYTES", "Producer batch size per partition, bytes.")
    ] = 512 * 1024,
    max_request_bytes: Annotated[
        int, _opt("MAX_REQUEST_BYTES", "Largest produce request, bytes.")
    ] = 2 * 1024 * 1024,
    request_timeout_ms: Annotated[
        int, _opt("REQUEST_TIMEOUT_MS", "Kafka request timeout, milliseconds.")
    ] = 30_000,
    delivery_timeout_ms: Annotated[
        int,
        _opt("DELIVERY_TIMEOUT_MS", "Give up on a record (delivery_failed) after, milliseconds."),
    ] = 120_000,
    client_id: Annotated[str, _opt("CLIENT_ID", "Kafka client id.")] = "sidecar",
    http_host: Annotated[
        str, _opt("HTTP_HOST", "Operations endpoint address (no auth: keep it local).")
    ] = "127.0.0.1",
    http_port: Annotated[
        int, _opt("HTTP_PORT", "Operations endpoint port (/metrics, /healthz, /readyz); 0: off.")
    ] = 8081,
    require_kafka: Annotated[
        bool, _opt("REQUIRE_KAFKA", "Fail /readyz while Kafka is unreachable.")
    ] = False,
    log_level: Annotated[str, _opt("LOG_LEVEL", "debug, info, warning or error.")] = "info",
    log_format: Annotated[str, _opt("LOG_FORMAT", "text or json.")] = "text",
    use_uvloop: Annotated[
        bool, _opt("UVLOOP", "Run on uvloop when installed.", "--uvloop/--no-uvloop")
    ] = True,
) -> None:
    """Serve: agentex updates in on the Unix socket, coalesced records out to Kafka."""
    config = _config(
        socket=socket,
        socket_mode=_mode(socket_mode),
        allowed_uids=_ids(allowed_uids, "--allowed-uids"),
        allowed_gids=_ids(allowed_gids, "--allowed-gids"),
        topic=topic,
        bootstrap_servers=bootstrap_servers,
        flush_interval_ms=flush_interval_ms,
        max_buffered_chars=max_buffered_chars,
        max_frame_bytes=max_frame_bytes,
        max_reply_bytes=max_reply_bytes,
        closed_stream_ttl=closed_stream_ttl,
        stream_idle_timeout=stream_idle_timeout,
        on_disconnect=on_disconnect,
        shutdown_timeout=shutdown_timeout,
        max_pending_bytes=max_pending_bytes,
        linger_ms=linger_ms,
        compression=compression,
        max_batch_bytes=max_batch_bytes,
        max_request_bytes=max_request_bytes,
        request_timeout_ms=request_timeout_ms,
        delivery_timeout_ms=delivery_timeout_ms,
        client_id=client_id,
        http_host=http_host,
        http_port=http_port,
        require_kafka=require_kafka,
        log_level=log_level,
        log_format=log_format,
        uvloop=use_uvloop,
    )
    _setup_logging(config.log_level, config.log_format)
    from sidecar.server import Server
    from sidecar.source.listener import SocketSetupError

    async def serve() -> int:
        return await Server(config, hard_deadline=True).serve()

    try:
        code = runtime.run(serve(), use_uvloop=config.uvloop)
    except SocketSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(code)


@app.command()
def check(
    bootstrap_servers: BootstrapOpt = "localhost:9092",
    topic: TopicOpt = "task-updates",
    socket: SocketOpt = DEFAULT_SOCKET,
    timeout: Annotated[float, typer.Option(help="Give up reaching Kafka after, seconds.")] = 10.0,
) -> None:
    """Validate the configuration and reach Kafka; exit non-zero with a clear message if not."""
    config = _config(bootstrap_servers=bootstrap_servers, topic=topic, socket=socket)
    from sidecar.sink.kafka import probe

    problems: list[str] = []
    if not config.socket.parent.is_dir():
        problems.append(f"socket folder {config.socket.parent} does not exist")
    try:
        partitions = runtime.run(asyncio.wait_for(probe(config), timeout), use_uvloop=False)
        typer.echo(
            f"kafka: {config.bootstrap_servers} reachable; topic {config.topic!r} "
            f"has {partitions} partitions"
        )
    except Exception as exc:  # any failure here is the message the operator needs
        problems.append(
            f"kafka: cannot reach {config.bootstrap_servers} / topic {config.topic!r}: {exc!r}"
        )
    for p in problems:
        typer.echo(f"error: {p}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("ok")


def main() -> None:
    app()


def _register_tools() -> None:
    # The client-side commands live in sidecar.tools; registered here so `sidecar --help`
    # lists every command of the one entry point.
    from sidecar.tools.commands import bench, send, tail

    app.command()(send)
    app.command()(tail)
    app.command()(bench)


_register_tools()

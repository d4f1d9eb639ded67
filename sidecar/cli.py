"""The `sidecar` command line: each command's options are derived from its settings
class (sidecar.config, through sidecar.options); a flag wins over a SIDECAR_* variable."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

from sidecar import __version__, runtime
from sidecar.config import Config
from sidecar.errors import ExitCode, StartupError
from sidecar.options import with_settings

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


@app.command()
@with_settings(Config)
def run(settings: Config) -> None:
    """Serve: agentex updates in on the Unix socket, coalesced records out to Kafka."""
    _setup_logging(settings.log_level, settings.log_format)
    from sidecar.server import Server

    async def serve() -> int:
        return await Server(settings, hard_deadline=True).serve()

    try:
        code = runtime.run(serve(), use_uvloop=settings.uvloop)
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    raise typer.Exit(code)


@app.command()
@with_settings(Config)
def check(
    settings: Config,
    timeout: Annotated[
        float, typer.Option(help="Give up reaching Kafka after this many seconds.")
    ] = 10.0,
) -> None:
    """Validate the configuration as run does, then reach Kafka and the topic: exit 2 if
    the configuration is wrong, 1 if Kafka cannot be used, 0 if all is well."""
    from sidecar.sink.kafka import probe

    problems: list[str] = []
    if not settings.socket.parent.is_dir():
        problems.append(f"socket folder {settings.socket.parent} does not exist")
    try:
        partitions = runtime.run(asyncio.wait_for(probe(settings), timeout), use_uvloop=False)
        typer.echo(
            f"kafka: {settings.bootstrap_servers} reachable; topic {settings.topic!r} "
            f"has {partitions} partitions"
        )
    except Exception as exc:  # any failure here is the message the operator needs
        problems.append(
            f"kafka: cannot reach {settings.bootstrap_servers} / topic {settings.topic!r}: {exc!r}"
        )
    for p in problems:
        typer.echo(f"error: {p}", err=True)
    if problems:
        raise typer.Exit(ExitCode.RUNTIME)
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

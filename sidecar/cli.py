"""The `sidecar` command line: each command's options are derived from its settings
class (sidecar.config, through sidecar.options); a flag wins over a SIDECAR_* variable."""

from __future__ import annotations

from typing import Annotated

import typer

from sidecar import __version__, runtime
from sidecar.config import Config
from sidecar.errors import ExitCode, StartupError
from sidecar.logs import setup_logging
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


@app.command()
@with_settings(Config)
def run(settings: Config) -> None:
    """Serve: agentex updates in on the Unix socket, coalesced records out to Kafka."""
    setup_logging(settings.log_level, settings.log_format)
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
    setup_logging(settings.log_level, settings.log_format)
    from sidecar.preflight import preflight
    from sidecar.sink.kafka import inspect_topic
    from sidecar.sink.problems import KafkaUnusable

    try:
        preflight(settings)  # what run checks before it starts, the same way
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    try:
        partitions = runtime.run(inspect_topic(settings, timeout), use_uvloop=False)
    except KafkaUnusable as exc:
        typer.echo(
            f"error: kafka: cannot {'reach' if exc.problem.heals else 'use'} "
            f"{settings.bootstrap_servers} / topic "
            f"{settings.topic!r}: {exc.problem}",
            err=True,
        )
        raise typer.Exit(ExitCode.RUNTIME) from None
    typer.echo(
        f"kafka: {settings.bootstrap_servers} reachable; topic {settings.topic!r} "
        f"has {partitions} partitions"
    )
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

"""The `sidecar` command line: each command's options are derived from its settings
class (sidecar.config, through sidecar.options); a flag wins over a SIDECAR_* variable."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sidecar import __version__, runtime
from sidecar.config import Config
from sidecar.errors import ExitCode, StartupError
from sidecar.logs import setup_logging
from sidecar.options import with_settings


def _keep_flags_whole() -> None:
    """Help is wrapped by (typer's copy of) click's TextWrapper, which breaks words at
    hyphens: `--max-frame-` / `bytes`. A flag name must stay whole to be read or copied,
    so the wrapper click looks up when it wraps is one that never breaks at a hyphen."""
    try:
        from typer._click import _textwrap
    except ImportError:  # a typer that uses click itself
        from click import _textwrap  # type: ignore[no-redef,import-not-found,unused-ignore]

    base: Any = _textwrap.TextWrapper

    class Wrapper(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "break_on_hyphens": False})

    _textwrap.TextWrapper = Wrapper  # type: ignore[misc]


_keep_flags_whole()

app = typer.Typer(
    name="sidecar",
    help="Kafka producer sidecar for AI agents: agentex updates in on a Unix socket, "
    "coalesced, ordered records out to Kafka.",
    epilog="The contract (socket, frames, replies, Kafka records and headers, lifecycle, "
    "exit codes, HTTP endpoint) is docs/protocol.md in the sidecar source repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help (click's formatter): wrapped at 80 columns as whole sentences, no boxes,
    # no truncated cells, no metavar on flags.
    rich_markup_mode=None,
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
    """Serve: agentex updates in on a Unix socket, records out to Kafka.

    Reads the agents' updates from the socket, coalesces each stream's deltas and
    produces ordered records to the topic until SIGTERM or SIGINT. Exits 0 after a
    clean drain, 1 if records were still unacknowledged at --shutdown-timeout, and 2
    with one line naming the cause if the settings or the environment are unusable.
    """
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
    """Validate the configuration, then reach Kafka and the topic.

    Checks every setting as run does, then connects to Kafka and looks the topic up.
    Exits 0 if all is well, 1 if Kafka or the topic cannot be used, and 2 if the
    configuration is wrong.
    """
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
    """The entry point: a usage error (a flag or SIDECAR_* value that does not parse, an
    unknown option) is one line naming the cause and exit 2, like every other usage or
    environment error (docs/protocol.md §7); `--help` shows the usage."""
    try:
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # a typer that uses click itself
        from click.exceptions import (  # type: ignore[no-redef,import-not-found,unused-ignore]
            NoArgsIsHelpError,
            UsageError,
        )
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `sidecar` alone: the help, as --help prints it
        typer.echo(exc.format_message())
        code = ExitCode.USAGE
    except UsageError as exc:
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {message} (see --help)", err=True)
        code = ExitCode.USAGE
    raise SystemExit(code or 0)


def _register_tools() -> None:
    # The client-side commands live in sidecar.tools; registered here so `sidecar --help`
    # lists every command of the one entry point.
    from sidecar.tools.commands import bench, send, tail

    app.command()(send)
    app.command()(tail)
    app.command()(bench)


_register_tools()

"""The error family: what a command exits with, and what ends a start-up in one line.

Rejections of a client's line (PROTOCOL §3) are `Rejection`s carrying an `ErrorCode`;
both live with the protocol (the client library reads the same codes) and are
re-exported here so the server has one place to import its errors from.
"""

from __future__ import annotations

from enum import IntEnum

from sidecar_client.protocol.replies import ErrorCode, Rejection

__all__ = ["ErrorCode", "ExitCode", "Rejection", "StartupError"]


class ExitCode(IntEnum):
    """Process exit codes (PROTOCOL §7)."""

    OK = 0
    # A runtime failure: records not acknowledged at the shutdown deadline, `check`
    # could not reach or use Kafka, `send` got error replies.
    RUNTIME = 1
    # A usage or environment error: a bad option or combination, an unusable socket
    # folder, a port in use. Always with one line that names the cause.
    USAGE = 2


class StartupError(Exception):
    """The configuration or the environment makes starting impossible: the command
    prints `error: <message>` (one line, no traceback) and exits `ExitCode.USAGE`."""

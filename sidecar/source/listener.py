"""The Unix socket: claim the path safely, serve connections, give the path back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from sidecar.errors import StartupError


class SocketInUseError(StartupError):
    """Another process is accepting on the socket path (`run` exits 2)."""


def claim_socket_path(path: Path) -> None:
    """Make `path` free to bind: replace a stale socket left by a dead process.

    A live one (something accepts a connection) or a file that is not a socket is
    never removed.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUseError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: nobody is accepting
        return
    except OSError as exc:
        raise SocketInUseError(f"{path} exists and cannot be probed: {exc}") from exc
    finally:
        probe.close()
    raise SocketInUseError(f"another process is accepting on {path}")


async def open_unix_listener(
    path: Path, mode: int, factory: Callable[[], asyncio.Protocol], *, backlog: int = 1024
) -> asyncio.Server:
    claim_socket_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    # Bind under a umask that already yields `mode`, so no other user can connect in
    # the instant between bind() and chmod().
    old = os.umask(0o777 & ~mode)
    try:
        server = await loop.create_unix_server(factory, str(path), backlog=backlog)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    return server


def release_socket_path(path: Path, server: asyncio.Server) -> None:
    """Remove the socket file if it is still the one this server bound."""
    ours = {s.getsockname() for s in server.sockets}
    with contextlib.suppress(OSError):
        if str(path) in ours or not ours:
            path.unlink(missing_ok=True)

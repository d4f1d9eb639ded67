"""The Unix socket: check its folder, claim the path, bind it with its mode from the
first instant, and give the path back only if it is still ours (PROTOCOL §1).

Why each step is the way it is (each was an attack or an accident in issue 10):

- The folder is checked before anything is created in it: whoever can write the folder
  can replace the socket under a live sidecar, or swap in a symlink. It must be owned by
  us or root, and not writable by group or others unless it is sticky (like /tmp: then
  only a file's owner may remove or rename it).
- The socket is bound under a umask that yields its mode, so it never exists with a
  wider one, and there is no later chmod: `chmod(path)` follows a symlink an attacker may
  have put in its place, and `fchmod` on a socket descriptor does not reach the file.
- The inode bound is remembered; at shutdown the path is unlinked only if it is still
  that inode, so a newer instance's live socket at the same path is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import StartupError

# Created when it is the default path's folder and missing: searchable by every user so
# agents of other uids can reach the socket, writable only by us.
_DEFAULT_FOLDER_MODE = 0o755


class SocketSetupError(StartupError):
    """The socket cannot be set up safely; `run` exits 2 with this one-line message."""


class SocketInUseError(SocketSetupError):
    """Another process is accepting on the socket path, or the path is not a socket."""


class SocketFolderError(SocketSetupError):
    """The socket's folder is missing, or others could replace what is in it."""


def check_socket_folder(folder: Path, *, create: bool = False) -> None:
    """Refuse a folder that someone other than us or root could write into.

    `create`: make the folder (one level, mode 0755) when it is missing, as for the
    default `/run/sidecar`; otherwise a missing folder is an error.
    """
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        if not create:
            raise SocketFolderError(f"socket folder {folder} does not exist") from None
        try:
            os.mkdir(folder, _DEFAULT_FOLDER_MODE)
        except FileExistsError:
            pass  # someone else made it meanwhile: judged below like any folder
        except OSError as exc:
            raise SocketFolderError(
                f"socket folder {folder} does not exist and cannot be created "
                f"({os.strerror(exc.errno or errno.EACCES)}); set --socket or XDG_RUNTIME_DIR"
            ) from None
        st = os.stat(folder)
    except OSError as exc:
        raise SocketFolderError(f"socket folder {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SocketFolderError(f"socket folder {folder} is not a directory")
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise SocketFolderError(
            f"socket folder {folder} is owned by uid {st.st_uid}, not by us ({me}) or root: "
            "its owner could replace the socket"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise SocketFolderError(
            f"socket folder {folder} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}) and not sticky: anyone who can write "
            "it could replace the socket"
        )


def claim_socket_path(path: Path) -> None:
    """Make `path` free to bind: replace a stale socket left by a dead process.

    A live one (something accepts a connection) or a file that is not a socket (a
    symlink included) is never removed.
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
        raise SocketInUseError(f"{path} exists and cannot be probed: {exc.strerror}") from exc
    finally:
        probe.close()
    raise SocketInUseError(f"another process is accepting on {path}")


@dataclass(frozen=True, slots=True)
class BoundSocket:
    """A listening socket and the identity of the file it was bound to."""

    sock: socket.socket
    path: Path
    dev: int
    ino: int


def bind_unix_socket(path: Path, mode: int, *, backlog: int = 1024) -> BoundSocket:
    """Bind and listen at `path` with file mode `mode`, the mode set at creation."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The socket file's mode is 0777 & ~umask at bind(): nothing to widen later.
        # The umask is process-wide, but start-up runs before any other thread exists.
        old = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        st = os.lstat(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SocketInUseError(f"{path} was taken by another process meanwhile") from None
        raise SocketSetupError(f"cannot bind {path}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return BoundSocket(sock, path, st.st_dev, st.st_ino)


async def open_unix_listener(
    path: Path,
    mode: int,
    factory: Callable[[], asyncio.Protocol],
    *,
    create_folder: bool = False,
    backlog: int = 1024,
) -> tuple[asyncio.Server, BoundSocket]:
    """Check the folder, claim the path, bind, and serve `factory` connections on it."""
    check_socket_folder(path.parent, create=create_folder)
    claim_socket_path(path)
    bound = bind_unix_socket(path, mode, backlog=backlog)
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_unix_server(factory, sock=bound.sock)
    except BaseException:
        bound.sock.close()
        release_socket_path(bound)
        raise
    return server, bound


def release_socket_path(bound: BoundSocket) -> bool:
    """Unlink the socket file if it is still the inode we bound; True if removed."""
    with contextlib.suppress(OSError):
        st = os.lstat(bound.path)
        if (st.st_dev, st.st_ino) == (bound.dev, bound.ino):
            os.unlink(bound.path)
            return True
    return False

"""What `run` checks before it starts, and `check` checks the same way (one code path):
each failure is a StartupError, one line naming the path or the setting, exit 2.

The settings model has already checked values and combinations; this checks them
against the machine: the socket's folder and path, and the security files.
"""

from __future__ import annotations

import os
from pathlib import Path

from sidecar.config import RUN_FOLDER, Config
from sidecar.errors import StartupError
from sidecar.security import client_security
from sidecar.source.listener import check_socket_folder

# sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def preflight(config: Config) -> None:
    check_socket_path(config.socket)
    client_security(config)  # reads the certificate, key and secret files


def check_socket_path(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise StartupError(
            f"--socket {path} is {size} bytes long; a Unix socket path may have at most "
            f"{MAX_SOCKET_PATH_BYTES} (use a shorter folder)"
        )
    folder = path.parent
    if folder == RUN_FOLDER and not folder.exists():
        return  # the default folder: run creates it (source.listener), or says why not
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise StartupError(f"socket folder {folder} {what} (--socket {path})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StartupError(
            f"socket folder {folder} is not writable by uid {os.geteuid()} (--socket {path})"
        )
    # Whether someone else could replace the socket there: `check` must refuse what `run`
    # refuses (the listener judges the folder again when it binds).
    check_socket_folder(folder)

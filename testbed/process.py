"""`sidecar run` as a process of its own, for the demo, the benchmark and tests."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any


def sidecar_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", *args]


async def start_sidecar(
    socket: Path, bootstrap: str, topic: str, *extra: str, timeout: float = 30.0, **kw: Any
) -> asyncio.subprocess.Process:
    """Start `sidecar run` (ops endpoint off, plus `extra` options); return once its socket
    accepts. `kw` goes to create_subprocess_exec (env, stderr...)."""
    args = ["run", "--socket", str(socket), "--bootstrap-servers", bootstrap, "--topic", topic]
    proc = await asyncio.create_subprocess_exec(
        *sidecar_command(*args, "--http-port", "0", *extra), **kw
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"sidecar exited with {proc.returncode} during start-up")
        try:
            _, writer = await asyncio.open_unix_connection(str(socket))
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sidecar did not open {socket} in {timeout}s") from None
            await asyncio.sleep(0.05)  # polling a child process's start-up
        else:
            writer.close()
            return proc

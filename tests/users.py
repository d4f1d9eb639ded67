"""A second, unprivileged user on this machine, for the tests of what another user (or a
second agent in the pod) can and cannot do (issue 10).

The user is created with `useradd` for the session when we are root (as here and in CI),
and removed at the end; where `useradd` is missing, a uid with no passwd entry serves as
well (the kernel needs none). Without root nobody else can be impersonated: the tests
that need it are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

_FALLBACK_UID = 54_321


@dataclass(frozen=True)
class User:
    name: str | None
    uid: int
    gid: int

    async def run(self, code: str, *args: str, timeout: float = 20) -> str:
        """Run Python `code` (stdlib only, `sys.argv[1:]` = `args`) as this user, in a
        forked child that drops to the user's uid and gids; return what it printed. A
        non-zero exit fails the test with what it wrote to stderr.

        A fork rather than a new interpreter: this Python may live where the other user
        cannot read (under /root)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                # pytest captures sys.stdout in objects of its own: write to the pipes.
                sys.stdout = os.fdopen(out_w, "w")
                sys.stderr = os.fdopen(err_w, "w")
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)
                sys.argv = ["as-user", *args]
                exec(textwrap.dedent(code), {"__name__": "__main__"})
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.close(out_w)
        os.close(err_w)

        def wait() -> tuple[int, bytes, bytes]:
            with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
                o, e = out.read(), err.read()
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), o, e

        code_, out, err = await asyncio.wait_for(asyncio.to_thread(wait), timeout)
        if code_ != 0:
            pytest.fail(f"as uid {self.uid}: exit {code_}: {err.decode()}")
        return out.decode()


@pytest.fixture(scope="session")
def other_user() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user (CI and the dev machine are root)")
    useradd = shutil.which("useradd")
    if useradd is None:
        yield User(None, _FALLBACK_UID, _FALLBACK_UID)
        return
    name = f"sctest{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [useradd, "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        userdel = shutil.which("userdel")
        if userdel is not None:
            subprocess.run([userdel, name], check=False, capture_output=True)

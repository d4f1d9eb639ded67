"""The socket file and its folder (PROTOCOL §1; issue 10 failures 1, 2 and 7)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.config import RUN_FOLDER, Config, default_socket_path
from sidecar.source.listener import (
    SocketFolderError,
    SocketInUseError,
    check_socket_folder,
    claim_socket_path,
)
from tests.helpers import make_config, open_server
from tests.users import User


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder that other users can reach (pytest's tmp_path is private to root)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="sidecar-sock-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


# -- failure 1: the mode is set at bind, never by a path-following chmod ------------------


async def test_socket_gets_its_mode_without_any_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"chmod by path follows symlinks: {args}")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    for mode in (0o600, 0o660, 0o666):
        config = make_config(tmp_path, socket_mode=mode)
        async with open_server(config):
            st = os.lstat(config.socket)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == mode


async def test_symlink_at_the_socket_path_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    config = make_config(tmp_path, socket_mode=0o666)
    config.socket.symlink_to(secret)
    with pytest.raises(SocketInUseError, match="not a socket"):
        async with open_server(config):
            pass
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert config.socket.is_symlink()


# -- failure 2: the folder is checked; the default is not in /tmp -------------------------


def test_default_socket_is_not_in_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == Path("/run/user/1000/sidecar.sock")
    assert Config().socket == Path("/run/user/1000/sidecar.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == RUN_FOLDER / "sidecar.sock"
    assert Config().socket.parent == RUN_FOLDER


@pytest.mark.parametrize(
    ("mode", "ok"),
    [(0o700, True), (0o755, True), (0o1777, True), (0o775, False), (0o777, False), (0o757, False)],
)
def test_folder_mode_is_checked(tmp_path: Path, mode: int, ok: bool) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    folder.chmod(mode)
    if ok:
        check_socket_folder(folder)
    else:
        with pytest.raises(SocketFolderError, match="writable by group or others"):
            check_socket_folder(folder)


def test_folder_owned_by_another_user_is_refused(tmp_path: Path, other_user: User) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, other_user.uid, other_user.gid)
    with pytest.raises(SocketFolderError, match=f"owned by uid {other_user.uid}"):
        check_socket_folder(folder)


def test_missing_folder_is_refused_unless_it_is_the_default(tmp_path: Path) -> None:
    with pytest.raises(SocketFolderError, match="does not exist"):
        check_socket_folder(tmp_path / "nope")
    check_socket_folder(tmp_path / "made", create=True)
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o755


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_run_refuses_an_unsafe_folder_with_one_line_and_exit_2(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(mode)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--socket", str(folder / "s.sock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "writable by group or others" in lines[0], proc.stderr
    assert not (folder / "s.sock").exists()


async def test_another_user_cannot_replace_the_live_socket_in_a_sticky_folder(
    shared_dir: Path, other_user: User
) -> None:
    """The /tmp-like case the check lets through: sticky, so only the socket's owner may
    remove or rename it; the second user's swap attempts all fail."""
    shared_dir.chmod(0o1777)
    config = make_config(shared_dir, socket_mode=0o666)
    async with open_server(config):
        before = os.lstat(config.socket).st_ino
        out = await other_user.run(
            """
            import os, socket, sys
            path = sys.argv[1]
            tries = []
            for act in (lambda: os.unlink(path), lambda: os.rename(path, path + ".x")):
                try:
                    act()
                    tries.append("done")
                except PermissionError:
                    tries.append("denied")
            print(",".join(tries))
            """,
            str(config.socket),
        )
        assert out.strip() == "denied,denied"
        assert os.lstat(config.socket).st_ino == before


async def test_a_socket_bound_first_by_another_user_is_never_taken_over(
    shared_dir: Path, other_user: User
) -> None:
    """Failure 2's capture: the other user binds our path first and accepts. We refuse
    to start (exit 2) instead of sharing the path or replacing a live socket."""
    shared_dir.chmod(0o1777)
    path = shared_dir / "sidecar.sock"
    ready = shared_dir / "ready"
    attacker = asyncio.create_task(
        other_user.run(
            """
            import os, socket, sys, time
            s = socket.socket(socket.AF_UNIX)
            s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen()
            open(sys.argv[2], "w").close()
            s.settimeout(10)
            try:
                c, _ = s.accept()  # the sidecar's liveness probe
                print("probed")
            except TimeoutError:
                print("no probe")
            """,
            str(path),
            str(ready),
        )
    )
    for _ in range(400):
        if ready.exists():
            break
        await asyncio.sleep(0.025)  # polling another process's start-up
    assert ready.exists()
    with pytest.raises(SocketInUseError, match="another process is accepting"):
        claim_socket_path(path)
    assert (await attacker).strip() == "probed"
    assert os.lstat(path).st_uid == other_user.uid  # left alone


# -- failure 7: shutdown unlinks only the inode it bound ---------------------------------


async def test_shutdown_leaves_a_newer_instances_socket_alone(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with open_server(config) as server:
        # A newer instance took the path over (it found ours stale, say) and is serving.
        os.unlink(config.socket)
        newer = socket.socket(socket.AF_UNIX)
        newer.bind(str(config.socket))
        newer.listen()
        try:
            assert await server.shutdown() == 0
            assert stat.S_ISSOCK(os.lstat(config.socket).st_mode)
            probe = socket.socket(socket.AF_UNIX)
            probe.connect(str(config.socket))  # the newer one still answers
            probe.close()
        finally:
            newer.close()


async def test_shutdown_unlinks_its_own_socket(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with open_server(config) as server:
        assert config.socket.exists()
        assert await server.shutdown() == 0
    assert not config.socket.exists()


def test_a_default_folder_that_cannot_be_created_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(path: object, mode: int = 0o777) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "mkdir", denied)
    with pytest.raises(SocketFolderError) as exc:
        check_socket_folder(tmp_path / "run-sidecar", create=True)
    message = str(exc.value)
    assert "cannot be created (Permission denied)" in message
    assert "set --socket or XDG_RUNTIME_DIR" in message
    assert "\n" not in message

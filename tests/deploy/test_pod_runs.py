"""The manifest's sidecar container, run here as a process: its own environment (only the
socket folder and the port rewritten for this machine) starts `sidecar run`; the
socket-dir step, run on a folder made the way the kubelet makes an emptyDir, gives a
folder the sidecar accepts; every probe of the manifest is answered on a non-127.0.0.1
address (what the kubelet's probes do: they connect to the pod IP); SIGTERM exits 0 within
the budget's --shutdown-timeout + 1 s. And why socket-dir exists: the sidecar refuses the
emptyDir's own root as its socket folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testbed.base import free_ports
from testbed.process import sidecar_command
from tests.deploy import pod
from tests.deploy.render import MANIFEST, docs

pytestmark = pytest.mark.deploy

# Another loopback address: a listener bound to 127.0.0.1 (the default) refuses it, one
# bound to 0.0.0.0 (the manifest) accepts it, as it accepts the pod IP in a cluster.
NOT_LOCALHOST = "127.0.0.2"


def kubelet_emptydir(path: Path) -> Path:
    """A folder as the kubelet makes an emptyDir with an fsGroup: mode 2777, no sticky bit."""
    path.mkdir()
    os.chmod(path, 0o2777)
    return path


def containers() -> tuple[dict[str, Any], dict[str, Any], str]:
    (doc,) = docs(MANIFEST.read_text())
    socket_dir, sidecar = pod.pod_spec(doc)["initContainers"][:2]
    (mount,) = (m["mountPath"] for m in sidecar["volumeMounts"] if m["name"] == "sidecar-socket")
    return socket_dir, sidecar, mount


def sidecar_env(sidecar: dict[str, Any], mount: str, emptydir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    for name, value in pod.env(sidecar).items():
        assert isinstance(value, str), f"{name} is not a plain value"
        env[name] = value.replace(mount, str(emptydir))
    env["SIDECAR_HTTP_PORT"] = str(port)
    env["SIDECAR_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"  # nothing there: an outage, not an error
    return env


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_accepting(path: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"sidecar exited {proc.returncode}: {proc.stderr}"
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            assert time.monotonic() < deadline, f"no socket at {path} after {timeout}s"
            time.sleep(0.05)  # polling a child process's start-up, as testbed.start_sidecar


def test_manifest_sidecar_serves_socket_and_probes(tmp_path: Path) -> None:
    socket_dir, sidecar, mount = containers()
    emptydir = kubelet_emptydir(tmp_path / "emptydir")
    command = [arg.replace(mount, str(emptydir)) for arg in socket_dir["command"]]
    assert command[0] == "python3"
    subprocess.run([sys.executable, *command[1:]], check=True, timeout=30)

    (port,) = free_ports(1)
    env = sidecar_env(sidecar, mount, emptydir, port)
    proc = subprocess.Popen(sidecar_command("run"), env=env, stderr=subprocess.PIPE)
    try:
        wait_accepting(env["SIDECAR_SOCKET"], proc)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = sidecar[probe]["httpGet"]["path"]
            assert get(f"http://{NOT_LOCALHOST}:{port}{path}") == 200, probe
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        deadline = float(env["SIDECAR_SHUTDOWN_TIMEOUT"]) + 1
        assert proc.wait(timeout=deadline + 5) == 0
        assert time.monotonic() - started <= deadline
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_sidecar_refuses_the_emptydir_root(tmp_path: Path) -> None:
    """Why socket-dir exists: the sidecar refuses the emptyDir's own root (mode 2777, no
    sticky bit) as its socket folder, with exit 2 and one line naming it."""
    _, sidecar, mount = containers()
    emptydir = kubelet_emptydir(tmp_path / "emptydir")
    (port,) = free_ports(1)
    env = sidecar_env(sidecar, mount, emptydir, port)
    env["SIDECAR_SOCKET"] = str(emptydir / "sidecar.sock")
    out = subprocess.run(sidecar_command("run"), env=env, capture_output=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert str(emptydir) in out.stderr.decode()
    assert not (emptydir / "sidecar.sock").exists()

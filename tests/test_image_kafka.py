"""The container image, built from this checkout and run as the manifest's pod runs it:
the `socket-dir` init step's command on a kubelet-like emptyDir, then the native sidecar
with the manifest's environment, as the image's own non-root user, read-only root (no
tmpfs either), every capability dropped, no new privileges, the manifest's memory limit.
It streams through its socket into the test bed's real broker, and on SIGTERM drains,
ends the open stream and exits 0.

Needs root and podman: `scripts/podman-setup.sh` installs it (`make test` runs it first).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import re
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from sidecar.sink.kafka import ConsumedRecord, open_consumer
from testbed.base import free_ports
from tests.helpers import RawClient, done, start, text_delta
from tests.test_e2e_kafka import check_streams, delta_text

pytestmark = [pytest.mark.kafka, pytest.mark.image]

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes" / "agent-with-sidecar.yaml"
UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}


def run_podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def podman(*args: str, check: bool = True, timeout: float = 60) -> str:
    result = run_podman(*args, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
    return result.stdout.strip()


def quantity(value: str | int) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]i?)?", str(value)).groups()  # type: ignore[union-attr]
    return int(number) * UNITS.get(unit or "", 1)


@dataclass(frozen=True)
class Pod:
    """What the manifest says about the two containers run from the sidecar image."""

    uid: int
    gid: int
    fs_group: int
    mount: str  # where the shared emptyDir is mounted
    init_command: list[str]  # socket-dir's command (replaces the image's entrypoint)
    env: dict[str, str]  # the native sidecar's plain environment
    memory: int  # the native sidecar's memory limit, bytes
    init_memory: int  # socket-dir's

    @classmethod
    def from_manifest(cls, path: Path = MANIFEST) -> Pod:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        spec: dict[str, Any] = docs[0]["spec"]["template"]["spec"]
        inits = {c["name"]: c for c in spec["initContainers"]}
        sidecar, socket_dir = inits["sidecar"], inits["socket-dir"]
        assert sidecar.get("restartPolicy") == "Always", "not a native sidecar"
        security = spec["securityContext"]
        (mount,) = (m["mountPath"] for m in sidecar["volumeMounts"])
        return cls(
            uid=security["runAsUser"],
            gid=security["runAsGroup"],
            fs_group=security["fsGroup"],
            mount=mount,
            init_command=[*socket_dir["command"], *socket_dir.get("args", [])],
            env={e["name"]: e["value"] for e in sidecar["env"] if "value" in e},
            memory=quantity(sidecar["resources"]["limits"]["memory"]),
            init_memory=quantity(socket_dir["resources"]["limits"]["memory"]),
        )


# podman's --read-only alone still mounts tmpfs on /tmp and /run; a read-only root file
# system in Kubernetes has none, so neither does this.
HARDENED = (
    "--pull=never", "--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)  # fmt: skip


@pytest.fixture(scope="session")
def sidecar_image() -> str:
    """The image built from this checkout (podman's layer cache makes a rebuild with
    nothing changed take seconds), so the test never runs a stale image."""
    for script in ("podman-setup.sh", "image-build.sh"):
        subprocess.run([str(ROOT / "scripts" / script)], check=True, timeout=900)
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    return os.environ.get("SIDECAR_IMAGE") or f"localhost/sidecar:{version.group(1)}"


@pytest.fixture
def emptydir(tmp_path: Path) -> Path:
    """The shared volume as the kubelet makes an emptyDir: root's, mode 2777, no sticky
    bit (a folder the sidecar refuses for its socket, hence the socket-dir step)."""
    folder = tmp_path / "emptydir"
    folder.mkdir()
    os.chmod(folder, 0o2777)
    return folder


async def wait_accepting(sock: Path, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_unix_connection(str(sock))
        except OSError:
            state = podman("inspect", name, "--format", "{{.State.Status}}")
            if state != "running" or time.monotonic() > deadline:
                logs = container_logs(name)
                pytest.fail(f"container {state}, socket not accepting:\n{logs}")
            await asyncio.sleep(0.1)  # polling another process's start-up
        else:
            writer.close()
            return


async def consume_until_terminals(
    bootstrap: str, topic: str, terminals: int, timeout: float = 30
) -> list[ConsumedRecord]:
    """The topic's records up to its `terminals`-th terminal (coalescing decides how many
    delta records there are)."""
    out: list[ConsumedRecord] = []
    async with open_consumer(bootstrap, topic) as records, asyncio.timeout(timeout):
        async for rec in records:
            out.append(rec)
            terminals -= rec.headers["type"] in (b"done", b"full")
            if terminals == 0:
                return out
    raise AssertionError("the topic ended early")


def container_logs(name: str) -> str:
    result = run_podman("logs", name)  # the container's stderr comes back on stderr
    return result.stdout + result.stderr


def http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


def in_container(name: str, script: str) -> str:
    return podman("exec", name, "sh", "-c", script)


@pytest.mark.timeout(600)
async def test_image_runs_the_manifests_pod_streams_to_kafka_and_drains_on_sigterm(
    sidecar_image: str, kafka_bootstrap: str, new_topic: Any, emptydir: Path
) -> None:
    pod = Pod.from_manifest()
    image_user = podman("image", "inspect", sidecar_image, "--format", "{{.Config.User}}")
    assert image_user == f"{pod.uid}:{pod.gid}", "the image's USER is not the pod's uid"
    topic = await new_topic(1)
    # As the kubelet runs them: the image's own user (no --user), plus the fsGroup.
    common = [*HARDENED, "--group-add", str(pod.fs_group), "-v", f"{emptydir}:{pod.mount}"]

    # 1. socket-dir: its command instead of the image's entrypoint, to completion.
    entrypoint, *args = pod.init_command
    podman(
        "run", "--rm", *common, f"--memory={pod.init_memory}", "--entrypoint", entrypoint,
        sidecar_image, *args,
    )  # fmt: skip

    # 2. The native sidecar, with the manifest's environment; only where Kafka is, the
    # topic and the ops port (host network: the machine's port must be free) differ.
    env = {
        **pod.env,
        "SIDECAR_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SIDECAR_TOPIC": topic,
        "SIDECAR_HTTP_PORT": str(free_ports(1)[0]),
    }
    shutdown_timeout = float(env.get("SIDECAR_SHUTDOWN_TIMEOUT", "25"))
    sock = emptydir / posixpath.relpath(env["SIDECAR_SOCKET"], pod.mount)
    name = f"sidecar-smoke-{uuid.uuid4().hex[:8]}"
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    podman(
        "run", "-d", "--name", name, "--network=host", *common, f"--memory={pod.memory}",
        *env_args, sidecar_image,
    )  # fmt: skip
    try:
        await wait_accepting(sock, name)
        # The probes' endpoints answer (the manifest points startup/readiness at /readyz).
        for path in ("/readyz", "/healthz"):
            url = f"http://127.0.0.1:{env['SIDECAR_HTTP_PORT']}{path}"
            assert await asyncio.to_thread(http_status, url) == 200, path

        # The process really runs as the hardening asks.
        status = in_container(name, "cat /proc/1/status")
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split()[0] == str(pod.uid), fields["Uid"]
        assert str(pod.fs_group) in fields["Groups"].split()
        assert int(fields["CapEff"].strip(), 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        assert podman("inspect", name, "--format", "{{.HostConfig.ReadonlyRootfs}}") == "true"
        assert podman("inspect", name, "--format", "{{.HostConfig.Memory}}") == str(pod.memory)
        cgroup = in_container(
            name,
            "cat /sys/fs/cgroup/memory.max 2>/dev/null"
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
        assert int(cgroup) == pod.memory
        for path in ("/opt/sidecar/x", "/tmp/x", "/run/x"):  # no tmpfs anywhere either
            write = run_podman("exec", name, "touch", path)
            assert write.returncode != 0 and "Read-only file system" in write.stderr, path

        # One stream finished by the agent, one left open for the shutdown to end.
        agent = await RawClient.connect(sock)
        await agent.send({"type": "hello", "client": "image-smoke/1", "acks": "all"})
        await agent.send(start("img-t1", "m1"))
        await agent.send(*(text_delta("img-t1", "m1", w) for w in ("hello ", "from ", "podman")))
        await agent.send(done("img-t1", "m1"))
        await agent.send(start("img-t2", "m2"), text_delta("img-t2", "m2", "cut short"))
        replies = await agent.read_replies(7, timeout=30)
        assert [r["type"] for r in replies] == ["ack"] * 7, replies
        assert [r["seq"] for r in replies] == list(range(2, 9))

        # SIGTERM: drain, end the open stream, exit 0 within the shutdown timeout.
        signalled = time.monotonic()
        podman("kill", "--signal", "TERM", name)
        code = podman("wait", name, timeout=30)
        took = time.monotonic() - signalled
        logs = container_logs(name)
        assert code == "0", logs
        assert took < shutdown_timeout + 1, took
        assert "draining" in logs, logs
        await agent.aclose()

        records = await consume_until_terminals(kafka_bootstrap, topic, 2)
        streams = check_streams(records)
        first, second = streams[("img-t1", "m1")], streams[("img-t2", "m2")]
        assert delta_text(first) == "hello from podman"
        assert first[-1].headers["terminal_reason"] == b"client"
        assert delta_text(second) == "cut short"
        assert second[-1].headers["type"] == b"done"
        assert second[-1].headers["terminal_reason"] == b"shutdown"
        assert orjson.loads(second[-1].value or b"{}")["parent_task_message"]["id"] == "m2"
        # The peer uid the sidecar read through the container boundary (SO_PEERCRED): ours.
        for rec in first + second[:-1]:
            assert rec.headers["writer_uid"] == str(os.getuid()).encode(), rec.headers
        assert len({rec.headers["sidecar_instance"] for rec in records}) == 1
    finally:
        podman("rm", "-f", name, check=False)

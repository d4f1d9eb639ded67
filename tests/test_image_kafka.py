"""The container image, built from this checkout and run the way the manifest runs it:
its own non-root user, read-only root, every capability dropped, no new privileges, the
manifest's memory limit. It streams through its socket into the test bed's real broker,
and on SIGTERM drains, ends the open stream and exits 0.

Needs root and podman: `scripts/podman-setup.sh` installs it (`make test` runs it first).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
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
IMAGE_USER = 10001  # the Dockerfile's USER
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


def manifest_memory_limit() -> int:
    """The sidecar container's memory limit in the native-sidecar manifest, in bytes."""
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        pod: dict[str, Any] = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
        # The native sidecar: the init container that keeps running beside the agent.
        for container in pod.get("initContainers", []):
            if container.get("restartPolicy") == "Always":
                limit = str(container["resources"]["limits"]["memory"])
                number, unit = re.fullmatch(r"(\d+)([KMG]i?)?", limit).groups()  # type: ignore[union-attr]
                return int(number) * UNITS.get(unit or "", 1)
    raise AssertionError(f"no native sidecar container (restartPolicy: Always) in {MANIFEST}")


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
def socket_dir(tmp_path: Path) -> Path:
    """The shared socket folder (an emptyDir in the pod): owned by the image's user."""
    folder = tmp_path / "run-sidecar"
    folder.mkdir(mode=0o750)
    os.chown(folder, IMAGE_USER, IMAGE_USER)
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


def in_container(name: str, script: str) -> str:
    return podman("exec", name, "sh", "-c", script)


@pytest.mark.timeout(600)
async def test_image_runs_locked_down_streams_to_kafka_and_drains_on_sigterm(
    sidecar_image: str, kafka_bootstrap: str, new_topic: Any, socket_dir: Path
) -> None:
    topic = await new_topic(1)
    memory = manifest_memory_limit()
    name = f"sidecar-smoke-{uuid.uuid4().hex[:8]}"
    http_port = free_ports(1)[0]
    podman(
        "run", "-d", "--pull=never", "--name", name, "--network=host",
        # The manifest's hardening; no --user: the image's own USER must be non-root.
        "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
        f"--memory={memory}", "-v", f"{socket_dir}:/run/sidecar",
        "-e", f"SIDECAR_BOOTSTRAP_SERVERS={kafka_bootstrap}", "-e", f"SIDECAR_TOPIC={topic}",
        "-e", f"SIDECAR_HTTP_PORT={http_port}", "-e", "SIDECAR_SHUTDOWN_TIMEOUT=10",
        sidecar_image,
    )  # fmt: skip
    try:
        sock = socket_dir / "sidecar.sock"
        await wait_accepting(sock, name)

        # The process really runs as the hardening asks.
        status = in_container(name, "cat /proc/1/status")
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split()[0] == str(IMAGE_USER), fields["Uid"]
        assert int(fields["CapEff"].strip(), 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        assert podman("inspect", name, "--format", "{{.HostConfig.ReadonlyRootfs}}") == "true"
        assert podman("inspect", name, "--format", "{{.HostConfig.Memory}}") == str(memory)
        cgroup = in_container(
            name,
            "cat /sys/fs/cgroup/memory.max 2>/dev/null"
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
        assert int(cgroup) == memory
        write = run_podman("exec", name, "touch", "/opt/sidecar/x")
        assert write.returncode != 0 and "Read-only file system" in write.stderr

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
        assert took < 10 + 1, took
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
    finally:
        podman("rm", "-f", name, check=False)

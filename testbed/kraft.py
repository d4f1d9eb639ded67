"""Local KRaft brokers run from Apache Kafka's own jars: one node (tests, demo) or a
3-node cluster (failover tests) on 127.0.0.1 with free ports. Every node is broker and
controller in one JVM; the controller quorum is static (`controller.quorum.voters`).
Any node can be stopped, killed and restarted on the same ports and data."""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from testbed.base import Broker, BrokerError, free_ports, wait_serving
from testbed.jars import KAFKA_VERSION, java, kafka_classpath

_ROOT_PREFIX = "sidecar-kafka-"
_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %c: %m%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
"""


class Node:
    """One JVM of a KRaftCluster: its ports, its folder, its process."""

    def __init__(self, node_id: int, root: Path, broker_port: int, controller_port: int) -> None:
        self.node_id = node_id
        self.dir = root / f"node-{node_id}"
        self.broker_port = broker_port
        self.controller_port = controller_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def configure(self, voters: str, replicas: int) -> None:
        self.dir.mkdir(parents=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.address},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.address}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.dir / "data",
            "num.partitions": 1,
            "auto.create.topics.enable": "true",
            "default.replication.factor": replicas,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 5,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": 1,
            "share.coordinator.state.topic.num.partitions": 5,
            "group.initial.rebalance.delay.ms": 0,
            # Few threads (2 cores, and a test suite beside it); quick fencing of a lost node.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 6000,
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        (self.dir / "server.properties").write_text(text)
        (self.dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.dir / "server.log"))

    def format_command(self, java_bin: str, classpath: str, cluster_id: str) -> list[str]:
        return [
            java_bin,
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(self.dir / "server.properties"),
            f"--cluster-id={cluster_id}",  # "=": an id may start with "-"
        ]

    def start(self, java_bin: str, classpath: str, heap_max: str, heap_min: str) -> None:
        if self.running:
            return
        cmd = [
            java_bin,
            f"-Xmx{heap_max}",
            f"-Xms{heap_min}",
            "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(self.dir / "server.properties"),
        ]
        with open(self.dir / "stdout.log", "ab") as out:  # the JVM keeps its own handle
            # A session of its own: a Ctrl-C reaches Python, which then stops it in order.
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.dir / "jvm.pid").write_text(str(self.proc.pid))

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, deadline: float) -> bool:
        """Wait for the process to end by `deadline` (monotonic); True if it has."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            return False
        return True

    def why_down(self) -> str | None:
        """Why this node cannot come up (its process ended), or None while it may."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"node {self.node_id} exited with {self.proc.returncode}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 25) -> str:
        out: list[str] = []
        for name in ("stdout.log", "server.log"):
            with contextlib.suppress(OSError):
                text = (self.dir / name).read_text(errors="replace").splitlines()[-lines:]
                out += [f"  {name}: {line}" for line in text]
        return "\n".join(out) or "  (no output)"


class KRaftCluster(Broker):
    """`size` KRaft nodes (1 for the tests and the demo, 3 for failover tests), running once
    constructed. `stop()`/`start()` act on every node, `kill(n)`/`restart(n)` on one."""

    kind = "local-kraft"

    def __init__(
        self,
        size: int = 1,
        *,
        heap_max: str | None = None,
        heap_min: str | None = None,
        start_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = size
        self.heap_max = heap_max or ("512m" if size == 1 else "384m")
        self.heap_min = heap_min or ("256m" if size == 1 else "128m")
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        _reap_orphans()
        self.java = java()
        self.classpath = kafka_classpath()
        self.root = Path(tempfile.mkdtemp(prefix=_ROOT_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        _live.add(self)
        try:
            ports = free_ports(2 * size)
            self.nodes = [
                Node(i + 1, self.root, ports[2 * i], ports[2 * i + 1]) for i in range(size)
            ]
            self.bootstrap_servers = ",".join(n.address for n in self.nodes)
            self._format()
            started = time.monotonic()
            self.start()
            self.startup_seconds = time.monotonic() - started
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        nodes = "1 node" if self.size == 1 else f"{self.size} nodes"
        return f"Kafka {KAFKA_VERSION} (local KRaft from jars, {nodes}) at {self.bootstrap_servers}"

    @property
    def node_ids(self) -> list[int]:
        return [n.node_id for n in self.nodes]

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} (nodes: {self.node_ids})")

    def address(self, node_id: int) -> str:
        return self.node(node_id).address

    def start(self) -> None:
        """Start every node that is not running, then wait until each serves. All JVMs are
        launched before waiting on any: a controller quorum needs a majority up."""
        for n in self.nodes:
            n.start(self.java, self.classpath, self.heap_max, self.heap_min)
        deadline = time.monotonic() + self.start_timeout
        for n in self.nodes:
            self._wait_serving(n, deadline)

    def stop(self) -> None:
        """Stop every node (SIGTERM together, SIGKILL after `stop_timeout`); data is kept."""
        self._stop(self.nodes, self.stop_timeout)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; its data is kept for `restart`."""
        n = self.node(node_id)
        n.signal(signal.SIGKILL)
        if not n.wait(time.monotonic() + 30):
            raise BrokerError(f"node {node_id} survived SIGKILL for 30s")

    def stop_node(self, node_id: int) -> None:
        self._stop([self.node(node_id)], self.stop_timeout)

    def restart(self, node_id: int) -> None:
        """Start one stopped or killed node again, same ports and data; wait until it serves."""
        n = self.node(node_id)
        n.start(self.java, self.classpath, self.heap_max, self.heap_min)
        self._wait_serving(n, time.monotonic() + self.start_timeout)

    def close(self) -> None:
        """Stop every node and remove all data. Safe to call more than once."""
        try:
            self._stop(getattr(self, "nodes", []), min(self.stop_timeout, 5.0))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            _live.discard(self)

    def _format(self) -> None:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        cluster_id = _cluster_id()
        procs = []
        for n in self.nodes:
            n.configure(voters, replicas=min(self.size, 3))
            cmd = n.format_command(self.java, self.classpath, cluster_id)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        failures = []
        for n, proc in zip(self.nodes, procs, strict=True):
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                failures.append(f"node {n.node_id}: {out.decode(errors='replace')[-1500:]}")
        if failures:
            raise BrokerError("kafka.tools.StorageTool format failed: " + "; ".join(failures))

    def _wait_serving(self, n: Node, deadline: float) -> None:
        wait_serving(
            n.address,
            n.node_id,
            max(deadline - time.monotonic(), 0.0),
            alive=n.why_down,
            what=f"Kafka node {n.node_id}",
        )

    @staticmethod
    def _stop(nodes: list[Node], timeout: float) -> None:
        for n in nodes:
            n.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in nodes:
            if not n.wait(deadline):
                n.signal(signal.SIGKILL)
                n.wait(time.monotonic() + 30)


def _cluster_id() -> str:
    while True:  # like Kafka's Uuid.randomUuid: never an id a CLI would read as an option
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# Clusters of this process not yet closed: closed at interpreter exit at the latest.
_live: set[KRaftCluster] = set()


@atexit.register
def _close_all() -> None:
    for cluster in list(_live):
        cluster.close()


def _reap_orphans() -> None:
    """Kill the JVMs and remove the folders left by a test run that died without closing
    its brokers (its owner process is gone). Only JVMs whose command line names that
    folder are signalled, by their recorded pid."""
    for root in Path(tempfile.gettempdir()).glob(f"{_ROOT_PREFIX}*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        for pid_file in root.glob("node-*/jvm.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(root).encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

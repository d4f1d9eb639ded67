"""The native-sidecar pod's invariants, as a list of problems (empty: fine). Every
rendered pod (manifest, kustomize, helm) must satisfy them; the tests also feed it broken
pods to show each rule can fail."""

from __future__ import annotations

import posixpath
from typing import Any

MiB = 1024 * 1024
AGENT_DRAIN_S = 15  # the agent's drain budget the manifest and chart defaults assume
SHUTDOWN_SLACK_S = 4  # the kubelet noticing the agent's exit and signalling the sidecar
PROCESS_BYTES = 64 * MiB  # the sidecar's own footprint, rounded up (measured ~48 MiB)
PENDING_FACTOR = 2  # RSS per pending byte, outage and catch-up (measured 1.2-1.8)
# RSS per byte of --max-open-stream-bytes: an agentex stream is counted about 1 KB and
# takes 1.22-1.25 KB of RSS (100k idle streams, tests/test_memory_kafka.py).
OPEN_STREAM_FACTOR = 1.5
DEFAULT_OPEN_STREAM_BYTES = 128 * MiB
UNITS = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}


def quantity(q: str | int) -> int:
    q = str(q)
    for suffix, factor in UNITS.items():
        if q.endswith(suffix):
            return int(q.removesuffix(suffix)) * factor
    return int(q)


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def problems(doc: dict[str, Any], *, agent_drain: float = AGENT_DRAIN_S) -> list[str]:
    spec = pod_spec(doc)
    found: list[str] = []
    inits = {c["name"]: c for c in spec.get("initContainers", [])}
    order = [c["name"] for c in spec.get("initContainers", [])]
    agent = next((c for c in spec["containers"] if c["name"] == "agent"), None)
    if order[:2] != ["socket-dir", "sidecar"] or agent is None:
        return [f"init containers {order} must start with socket-dir then sidecar; an agent"]
    sidecar, socket_dir = inits["sidecar"], inits["socket-dir"]
    if sidecar.get("restartPolicy") != "Always":
        found.append("sidecar is not a native sidecar (restartPolicy: Always)")
    if "restartPolicy" in socket_dir:
        found.append("socket-dir must run to completion before the sidecar starts")
    e = env(sidecar)
    # socket-dir's folder must belong to the sidecar's uid (the sidecar refuses others').
    uid = spec.get("securityContext", {}).get("runAsUser")
    uids = {c.get("securityContext", {}).get("runAsUser", uid) for c in (socket_dir, sidecar)}
    if len(uids) != 1:
        found.append(f"socket-dir and sidecar run as different uids {uids}")

    # The socket: one path for both, in the folder socket-dir makes, on the shared emptyDir.
    socket = e.get("SIDECAR_SOCKET")
    if socket is None or env(agent).get("SIDECAR_SOCKET") != socket:
        found.append(f"agent and sidecar disagree on SIDECAR_SOCKET ({socket})")
    else:
        folder = posixpath.dirname(socket)
        if f"os.makedirs('{folder}'" not in " ".join(socket_dir.get("command", [])):
            found.append(f"socket-dir does not make the socket folder {folder}")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in (socket_dir, sidecar, agent):
            mounts = [
                m
                for m in c.get("volumeMounts", [])
                if folder.startswith(m["mountPath"].rstrip("/") + "/")
                and "emptyDir" in volumes.get(m["name"], {})
            ]
            if not mounts:
                found.append(f"{c['name']} does not mount an emptyDir above {folder}")

    # The ops endpoint: reachable on the pod IP, probes on /readyz and /healthz.
    if e.get("SIDECAR_HTTP_HOST") != "0.0.0.0":
        found.append("SIDECAR_HTTP_HOST must be 0.0.0.0: probes connect to the pod IP")
    ports = {p["name"]: p["containerPort"] for p in sidecar.get("ports", [])}
    if str(ports.get("ops")) != str(e.get("SIDECAR_HTTP_PORT")):
        found.append(f"ops port {ports.get('ops')} != SIDECAR_HTTP_PORT")
    for probe, path in (
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ):
        get = sidecar.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != "ops":
            found.append(f"sidecar {probe} must GET {path} on the ops port, not {get}")
    annotations = doc["spec"]["template"].get("metadata", {}).get("annotations", {})
    if "prometheus.io/port" in annotations and annotations["prometheus.io/port"] != str(
        ports.get("ops")
    ):
        found.append("prometheus.io/port is not the ops port")

    # The shutdown budget: the agent drains first, then the sidecar within its deadline.
    shutdown = float(e.get("SIDECAR_SHUTDOWN_TIMEOUT", 25))
    need = agent_drain + shutdown + 1 + SHUTDOWN_SLACK_S
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace < need:
        found.append(
            f"terminationGracePeriodSeconds {grace} < agent drain {agent_drain} + "
            f"--shutdown-timeout {shutdown} + 1 + slack {SHUTDOWN_SLACK_S}"
        )

    # Memory: the limit holds the process plus what --max-pending-bytes and
    # --max-open-stream-bytes let pile up (past either, reads pause: no OOM kill first).
    resources = sidecar.get("resources", {})
    limit = resources.get("limits", {}).get("memory")
    pending = int(e.get("SIDECAR_MAX_PENDING_BYTES", 64 * MiB))
    streams = int(e.get("SIDECAR_MAX_OPEN_STREAM_BYTES", DEFAULT_OPEN_STREAM_BYTES))
    need = PROCESS_BYTES + PENDING_FACTOR * pending + OPEN_STREAM_FACTOR * streams
    if limit is None:
        found.append("sidecar has no memory limit")
    elif quantity(limit) < need:
        found.append(
            f"memory limit {limit} < {PROCESS_BYTES // MiB} MiB + {PENDING_FACTOR} x "
            f"--max-pending-bytes ({pending / MiB:g} MiB) + {OPEN_STREAM_FACTOR:g} x "
            f"--max-open-stream-bytes ({streams / MiB:g} MiB)"
        )
    elif resources.get("requests", {}).get("memory") != limit:
        found.append("memory request != limit (an outage's memory must be reserved)")

    # Secrets never in a flag or a plain value.
    if any(a.startswith("--sasl-password") for a in sidecar.get("args", [])):
        found.append("SASL password given as a flag")
    if isinstance(e.get("SIDECAR_SASL_PASSWORD"), str):
        found.append("SIDECAR_SASL_PASSWORD given as a plain value, not from a Secret")
    return found

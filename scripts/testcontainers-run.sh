#!/usr/bin/env bash
# The kafka-marked tests once more, with the broker from the test bed's Docker branch
# (testcontainers' KafkaContainer), served by podman's Docker-compatible API: the path most
# users take, proven here without a Docker engine or a registry.
#  - the Kafka image is built locally (scripts/kafka-image.sh) from the jars the test bed
#    already fetches, on the python:3.11-slim stand-in (scripts/podman-setup.sh);
#  - Ryuk is off (its image cannot be pulled); the test bed removes its containers itself;
#  - TESTCONTAINERS_CONNECTION_MODE=docker_host: testcontainers sees /.dockerenv on such
#    machines, picks `gateway_ip`, and podman's container list has no HostConfig for it;
#  - SIDECAR_TESTBED=testcontainers: no silent fallback to the local KRaft broker.
#   scripts/testcontainers-run.sh [PYTEST ARGS...]     (default: -m "kafka and not image")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TAG=localhost/kafka-local:8.1.0   # must read as a Confluent version >= 7 for with_kraft()

work=$(mktemp -d)
svc=
cleanup() {
    if [ -n "$svc" ]; then kill "$svc" 2>/dev/null || true; wait "$svc" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

libs=$("$PY" -c 'from testbed.jars import cache_dir, kafka_classpath
kafka_classpath()
print(cache_dir() / "libs")')
scripts/kafka-image.sh "$libs" "$work/kafka-ctx" localhost/python:3.11-slim "$TAG"

# A private API socket for this run only; stopped on exit.
sock=$work/podman.sock
podman system service --time=0 "unix://$sock" &
svc=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "podman system service did not open $sock" >&2; exit 1; }

export DOCKER_HOST=unix://$sock TESTCONTAINERS_RYUK_DISABLED=true \
    TESTCONTAINERS_CONNECTION_MODE=docker_host SIDECAR_KAFKA_IMAGE=$TAG \
    SIDECAR_TESTBED=testcontainers
unset KAFKA_BOOTSTRAP_SERVERS
[ $# -gt 0 ] || set -- -m "kafka and not image"
"${PY%python}pytest" "$@"

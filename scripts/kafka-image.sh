#!/bin/sh
# (From the recipe in the project's shared notes, checked on this machine kind; changed: an
# init process as ENTRYPOINT, see kafka-image/init.py, and the jars come from the test bed.)
# Build a local Kafka image that testcontainers' KafkaContainer (with_kraft) can drive, from
# Apache Kafka's jars that the test bed already fetched with Maven, on top of
# the local Debian stand-in base plus Debian's JRE. No registry is involved.
#
#   kafka-image.sh LIBS_DIR [WORKDIR] [BASE_IMAGE] [TAG]
#   (`make kafka-image` passes the test bed's jars, fetching them first if need be.)
#
# LIBS_DIR: the folder with kafka_2.13-*.jar and its runtime jars (incl. log4j-slf4j-impl).
# It mimics the parts of Confluent's cp-kafka image that testcontainers relies on:
# /etc/confluent/docker/{bash-config,configure,launch}, `kafka-storage` on PATH, KAFKA_* env
# vars turned into /etc/kafka/kafka.properties, and the "Kafka Server started" log line.
# The tag must look like a Confluent version >= 7.0.0, or with_kraft() refuses the image.
set -eu
LIBS=${1:?usage: kafka-image.sh LIBS_DIR [WORKDIR] [BASE_IMAGE] [TAG]}
if [ -n "${2:-}" ]; then WORK=$2; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
BASE=${3:-localhost/python:3.11-slim}
TAG=${4:-localhost/kafka-local:8.1.0}
ls "$LIBS"/kafka_2.13-*.jar >/dev/null

rm -rf "$WORK/libs" "$WORK/bin" "$WORK/docker" "$WORK/config" "$WORK/Containerfile"
mkdir -p "$WORK/bin" "$WORK/docker" "$WORK/config"
cp -r "$LIBS" "$WORK/libs"
cp "$(dirname "$0")/kafka-image/init.py" "$WORK/bin/tc-init"

cat > "$WORK/Containerfile" <<EOF
FROM $BASE
RUN mkdir -p /usr/share/man/man1 && apt-get update \\
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY libs/ /opt/kafka/libs/
COPY config/ /opt/kafka/config/
COPY bin/ /usr/bin/
COPY docker/ /etc/confluent/docker/
RUN chmod 755 /usr/bin/kafka-* /usr/bin/tc-init /etc/confluent/docker/* \\
    && mkdir -p /etc/kafka /var/lib/kafka/data
EXPOSE 9092 9093
# exec form: tc-init is PID 1, so SIGTERM reaches the broker (not a shell that ignores it).
ENTRYPOINT ["/usr/bin/tc-init"]
CMD ["/etc/confluent/docker/run"]
EOF

cat > "$WORK/config/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
EOF

cat > "$WORK/bin/kafka-storage" <<'EOF'
#!/bin/sh
exec java -Xmx256m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
EOF

cat > "$WORK/bin/kafka-server-start" <<'EOF'
#!/bin/sh
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -XX:+UseG1GC \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$@"
EOF

printf '# sourced by testcontainers start script (cp-kafka layout)\n:\n' > "$WORK/docker/bash-config"

# testcontainers deletes lines naming the ZooKeeper variable from this file and appends a
# `kafka-storage format` line to it, so it must stay a plain shell script without `exit`.
cat > "$WORK/docker/configure" <<'EOF'
#!/bin/sh
set -e
python3 - <<'PY'
import os
skip = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_OPTS",
        "KAFKA_JMX_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_VERSION"}
props = {"log.dirs": "/var/lib/kafka/data"}
for key, value in os.environ.items():
    if key.startswith("KAFKA_") and key not in skip:  # cp-kafka: ___ -> -, __ -> _, _ -> .
        name = key[6:].lower().replace("___", "-").replace("__", "\0")
        props[name.replace("_", ".").replace("\0", "_")] = value
with open("/etc/kafka/kafka.properties", "w") as f:
    f.write("".join(f"{k}={v}\n" for k, v in sorted(props.items())))
PY
EOF

cat > "$WORK/docker/launch" <<'EOF'
#!/bin/sh
exec kafka-server-start /etc/kafka/kafka.properties
EOF

# Plain `podman run` (no testcontainers): set CLUSTER_ID and the KAFKA_* listener variables.
cat > "$WORK/docker/run" <<'EOF'
#!/bin/sh
set -e
/etc/confluent/docker/configure
kafka-storage format --ignore-formatted -t "${CLUSTER_ID:?set CLUSTER_ID}" -c /etc/kafka/kafka.properties
exec /etc/confluent/docker/launch
EOF

podman build --pull=never --network=host -t "$TAG" -f "$WORK/Containerfile" "$WORK" >&2
echo "built $TAG" >&2

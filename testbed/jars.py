"""Apache Kafka's own jars, fetched from Maven Central with Maven into a cache folder
outside the repository (`~/.cache/sidecar/kafka-<version>/libs`, or under
`$SIDECAR_KAFKA_CACHE`) and reused between runs. Never committed."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testbed.base import BrokerError, say

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # Kafka's POM leaves the logging binding out (Kafka 4.x: SLF4J 1.7)
MIN_JAVA = 17

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sidecar</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
{log4j}
  </dependencies>
</project>
"""
_LOG4J_DEP = """    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>{name}</artifactId>
      <version>{version}</version>
    </dependency>"""


class JarsUnavailable(BrokerError):
    """Kafka's jars cannot be had, or there is no Java to run them."""


def cache_dir() -> Path:
    root = os.environ.get("SIDECAR_KAFKA_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "sidecar"
    return base / f"kafka-{KAFKA_VERSION}"


def java() -> str:
    """The `java` to run Kafka with (Java 17+), or JarsUnavailable saying why not."""
    found = shutil.which("java")
    if found is None:
        raise JarsUnavailable(f"no `java` on PATH (Java {MIN_JAVA}+ runs the local broker)")
    try:
        out = subprocess.run(
            [found, "-version"], capture_output=True, text=True, timeout=60, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JarsUnavailable(f"`{found} -version` failed: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise JarsUnavailable(f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+; {found}: {out!r}")
    return found


def kafka_classpath() -> str:
    """The broker's classpath (`<libs>/*`), fetching the jars on first use. A file lock
    guards concurrent fetches; the marker file, written last, says the folder is whole."""
    folder = cache_dir()
    libs, marker = folder / "libs", folder / "complete"
    if marker.exists():
        return f"{libs}/*"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsUnavailable(f"no `mvn` on PATH (Maven fetches Kafka {KAFKA_VERSION}'s jars)")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be fetching right now
        if marker.exists():
            return f"{libs}/*"
        started = time.monotonic()
        _fetch(mvn, libs)
        marker.write_text(f"kafka {KAFKA_VERSION}, log4j {LOG4J_VERSION}\n")
    jars = len(list(libs.glob("*.jar")))
    took = time.monotonic() - started
    say(f"fetched Kafka {KAFKA_VERSION}'s {jars} jars into {libs} in {took:.1f}s")
    return f"{libs}/*"


def _fetch(mvn: str, libs: Path) -> None:
    shutil.rmtree(libs, ignore_errors=True)  # a fetch interrupted half-way
    log4j = "\n".join(
        _LOG4J_DEP.format(name=name, version=LOG4J_VERSION)
        for name in ("log4j-slf4j-impl", "log4j-api", "log4j-core")
    )
    with tempfile.TemporaryDirectory(prefix="sidecar-kafka-pom-") as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_POM.format(kafka=KAFKA_VERSION, log4j=log4j))
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise JarsUnavailable(f"Maven could not fetch Kafka {KAFKA_VERSION}: {exc}") from exc
    if proc.returncode != 0 or not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        tail = (proc.stdout + proc.stderr).strip()[-2000:]
        raise JarsUnavailable(
            f"Maven could not fetch Kafka {KAFKA_VERSION} (exit {proc.returncode}): {tail}"
        )

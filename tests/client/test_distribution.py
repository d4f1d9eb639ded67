"""What an agent gets from `pip install sidecar-client`: orjson and nothing else, and an
import that pulls in no Kafka client, no agentex and nothing of the server."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_depends_on_orjson_only() -> None:
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert [Requirement(r).name for r in project["dependencies"]] == ["orjson"]
    assert project["requires-python"] == ">=3.11"
    extras = project["optional-dependencies"]
    assert [Requirement(r).name for r in extras["agentex"]] == ["agentex-sdk"]
    assert [Requirement(r).name for r in extras["kafka"]] == ["aiokafka"]


def test_importing_the_client_loads_no_kafka_agentex_or_server() -> None:
    code = (
        "import sys, sidecar_client, sidecar_client.reassemble, sidecar_client.updates, "
        "sidecar_client.sync, sidecar_client.protocol; "
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'aiokafka', 'agentex', 'sidecar', 'pydantic', 'typer', 'prometheus_client'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"

"""The real agentex-sdk (0.28.4, Python 3.12, in `.venv-agentex`, made by `make test`)
against `sidecar_client`: its DeltaAccumulator against ours, and an agentex agent
streaming through `SidecarStreamRepository` -> a real sidecar -> real Kafka and back.

Without that environment these tests fail (never skip): `make agentex-venv` makes it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testbed.process import start_sidecar
from tests.conftest import NewTopic

ROOT = Path(__file__).resolve().parents[2]
AGENTEX_PYTHON = ROOT / ".venv-agentex" / "bin" / "python"


def agentex_python() -> Path:
    if not AGENTEX_PYTHON.exists():
        pytest.fail(f"{AGENTEX_PYTHON} is missing: `make agentex-venv` creates it (make test does)")
    check = subprocess.run(
        [str(AGENTEX_PYTHON), "-c", "import agentex, sidecar_client.agentex"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, f"agentex-sdk unusable in .venv-agentex:\n{check.stderr}"
    return AGENTEX_PYTHON


@pytest.mark.timeout(120)
def test_our_accumulator_is_agentex_delta_accumulator() -> None:
    # Random delta sequences of every kind through both: the same content, or both refuse.
    got = subprocess.run(
        [str(agentex_python()), "-m", "tests.agentex.accumulator", "3000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    summary = json.loads(got.stdout)
    assert summary["cases"] == 3000
    assert 0 < summary["refused_by_both"] < 3000  # the refusal paths ran too


def terminal_events(events: list[dict[str, Any]]) -> list[str]:
    return [e["parent_task_message"]["id"] for e in events if e["type"] in ("done", "full")]


@pytest.mark.kafka
@pytest.mark.timeout(240)
async def test_agentex_streams_through_the_sidecar_and_reads_back_equal(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    python = agentex_python()
    topic = await new_topic(partitions=3)
    sock = tmp_path / "s.sock"
    proc = await start_sidecar(sock, kafka_bootstrap, topic)
    try:
        agent = await asyncio.create_subprocess_exec(
            str(python),
            "-m",
            "tests.agentex.agent",
            str(sock),
            kafka_bootstrap,
            topic,
            "per_token",
            "coalesced",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(agent.communicate(), 200)
    finally:
        proc.terminate()
        await proc.wait()
    assert agent.returncode == 0, err.decode()[-4000:]
    results = json.loads(out)
    assert set(results) == {"per_token", "coalesced"}
    for mode, r in results.items():
        print(f"{mode}: agentex sent {len(r['sent'])} events, Kafka holds {r['records']} records")
        ids = r["ids"]
        assert len(ids) == 5
        # What agentex's DeltaAccumulator built (and persisted) is what a reader rebuilds,
        # from subscribe's events and from the records with their headers checked.
        assert set(r["persisted"]) == set(ids), mode
        assert r["from_events"] == r["persisted"], mode
        assert r["from_records"] == r["persisted"], mode
        kinds = [r["persisted"][i]["type"] for i in ids]
        assert kinds == ["text", "reasoning", "tool_request", "tool_response", "text"], mode
        assert r["persisted"][ids[2]]["arguments"]["city"] == "Paris"
        assert r["persisted"][ids[1]]["summary"] and r["persisted"][ids[1]]["content"]
        assert r["persisted"][ids[4]]["content"] == "the whole answer, at once"
        # subscribe yields what agentex sent: same messages, same order, and (the sidecar
        # only merges consecutive deltas) the same text per message.
        assert terminal_events(r["subscribed"]) == terminal_events(r["sent"]) == ids
        # send_event returned "partition:offset" for each terminal, as stored in Kafka,
        # and nothing for the rest; subscribe resumes after such a position.
        assert [x for x in r["returned"] if x] == r["terminal_positions"]
        assert r["resumed_first_message"] == ids[1]
    # per_token reaches the sidecar one delta per line, which coalesces them: fewer
    # records than agentex sent events.
    per_token = results["per_token"]
    assert per_token["records"] < len(per_token["sent"])

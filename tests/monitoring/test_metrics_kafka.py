"""Every metric the dashboard and the alerting rules use is one a real sidecar exports.

A `sidecar run` process streams a short workload into a real broker; then its /metrics
must name every metric that deploy/grafana and deploy/prometheus query, and a real
Prometheus (Debian's `prometheus`, the package that ships promtool) scraping it with the
rules loaded must evaluate every dashboard query and every rule without an error, and
find data for the ones that do not depend on an incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testbed.process import start_sidecar
from tests.conftest import NewTopic
from tests.helpers import RawClient, done, start, text_delta
from tests.monitoring.sources import RULES, dashboard_exprs, rule_exprs, used_metric_names
from tests.test_ops import free_port, get

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


@contextlib.asynccontextmanager
async def running_sidecar(tmp_path: Path, bootstrap: str, topic: str) -> AsyncIterator[int]:
    """A real `sidecar run` process with its ops endpoint on a free loopback port."""
    port = free_port()
    proc = await start_sidecar(
        tmp_path / "s.sock", bootstrap, topic, "--http-host", "127.0.0.1", "--http-port", str(port)
    )
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)


async def workload(sock: Path) -> None:
    """Three streams of coalesced deltas, each acked terminal, and one rejected line."""
    client = await RawClient.connect(sock)
    await client.send({"type": "hello", "client": "metrics-test/1", "acks": "terminal"})
    for i in range(3):
        await client.send(start("t-metrics", f"m{i}"))
        await client.send(*(text_delta("t-metrics", f"m{i}", f"w{j} ") for j in range(40)))
        await client.send(done("t-metrics", f"m{i}"))
    await client.send(b"not json\n")
    replies = await client.read_replies(4, timeout=60)
    assert sorted(r["type"] for r in replies) == ["ack", "ack", "ack", "error"], replies
    await client.aclose()


async def scrape(port: int) -> set[str]:
    status, body = await get(port, "/metrics")
    assert status == 200
    return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, sidecar_port: int) -> Iterator[str]:
    """A real Prometheus scraping the sidecar every second, with the alerting rules loaded;
    yields its base URL."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus not found: `make test` installs it (Debian package prometheus)")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "sidecar", "static_configs": [{"targets": [f"127.0.0.1:{sidecar_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def api(base: str, path: str, **params: str) -> Any:
    """GET a Prometheus API path; its `data` (None while Prometheus is not answering)."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = orjson.loads(resp.read())
    except OSError:
        return None
    assert doc["status"] == "success", doc
    return doc["data"]


async def until(what: str, check: Any, timeout: float = 60) -> Any:
    """Poll an external process (Prometheus) until `check()` is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(check)
        if got:
            return got
        await asyncio.sleep(0.25)
    pytest.fail(f"{what}: not within {timeout:.0f}s")


def grafana_to_promql(expr: str) -> str:
    for var, value in (("$__rate_interval", "1m"), ("$job", ".*"), ("$instance", ".*")):
        expr = expr.replace(var, value)
    return expr


def query(prom: str, promql: str) -> list[dict[str, Any]]:
    data = api(prom, "/api/v1/query", query=promql)
    return [] if data is None else list(data["result"])


async def test_every_queried_metric_is_exported(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic(1)
    async with running_sidecar(tmp_path, kafka_bootstrap, topic) as port:
        with running_prometheus(tmp_path, port) as prom:
            await until("a scrape of the idle sidecar", lambda: query(prom, "sidecar_kafka_up"))
            await workload(tmp_path / "s.sock")

            exported = await scrape(port)
            missing = {n: w for n, w in used_metric_names().items() if n not in exported}
            assert not missing, f"used but not in /metrics: {missing}"

            # Two scrapes after the workload, so that rate() sees it, also in series that
            # the workload created (a label seen for the first time).
            await until(
                "two scrapes after the workload",
                lambda: query(prom, "count_over_time(sidecar_streams_ended_total[1m]) >= 2"),
            )
            for where, expr in dashboard_exprs().items():
                result = await asyncio.to_thread(query, prom, grafana_to_promql(expr))
                assert result, f"{where}: no data for {expr}"
            # The coalescing panels compute a ratio from what Prometheus scraped: 40 deltas
            # per stream, written at once, left in fewer delta records than that.
            for where, expr in dashboard_exprs().items():
                if where.startswith(("Coalescing ratio", "Deltas per record")):
                    (sample,) = await asyncio.to_thread(query, prom, grafana_to_promql(expr))
                    assert 1 < float(sample["value"][1]) <= 40, (where, sample)

            def evaluated() -> list[dict[str, Any]] | None:
                data = api(prom, "/api/v1/rules")
                rules = [r for g in (data or {}).get("groups", []) for r in g["rules"]]
                ok = rules and all(not r["lastEvaluation"].startswith("0001") for r in rules)
                return rules if ok else None

            rules = await until("every rule evaluated once", evaluated)
            assert {r["name"] for r in rules} == set(rule_exprs())
            assert all(r["health"] == "ok" for r in rules), rules
            # A healthy sidecar raises none of them.
            assert all(r["state"] == "inactive" for r in rules), rules

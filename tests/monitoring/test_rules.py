"""The alerting rules and the dashboard as files: promtool checks and unit-tests the rules,
the operator's copy agrees with the one source, and the PromQL extraction the metric-name
test relies on finds what it should."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.monitoring.sources import (
    MAKE_OPERATOR_RULES,
    OPERATOR_RULES,
    RULES,
    RULES_TESTS,
    dashboard,
    dashboard_exprs,
    metric_names,
    rule_exprs,
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: `make test` installs it (Debian package prometheus)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", str(RULES_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    tested = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == set(rule_exprs())


def test_operator_rules_are_generated_from_the_one_source() -> None:
    out = subprocess.run(
        [sys.executable, str(MAKE_OPERATOR_RULES), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    operator = yaml.safe_load(OPERATOR_RULES.read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_dashboard_panels_have_queries_and_unique_ids() -> None:
    doc = dashboard()
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        if p["type"] != "row":
            assert p["targets"], p["title"]
            assert p["description"], p["title"]
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for wanted in (
        "open streams",
        "deltas in",
        "records out",
        "coalescing",
        "first-delta latency",
        "pending bytes against the bound",
        "paused by backpressure",
        "failures",
        "replies dropped",
        "kafka reachable",
    ):
        assert wanted in titles


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    """Each dashboard query, with Grafana's variables filled in, is PromQL that promtool's
    rule checker accepts (it parses every expression)."""
    exprs = {
        where: expr.replace("$__rate_interval", "1m").replace("$job", ".*")
        for where, expr in dashboard_exprs().items()
    }
    exprs = {w: e.replace("$instance", ".*") for w, e in exprs.items()}
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e}
                    for i, e in enumerate(exprs.values())
                ],
            }
        ]
    }
    tmp = tmp_path / "dashboard-exprs.yaml"
    tmp.write_text(yaml.safe_dump(rules))
    out = promtool("check", "rules", str(tmp))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sidecar_kafka_up == 0", {"sidecar_kafka_up"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval])))',
            {"a_bucket"},
        ),
        ("changes(p[30m]) >= 3 and on (job, instance) k", {"p", "k"}),
        ('x / on(i) group_left(foo) y{l="and"} offset 5m', {"x", "y"}),
        ("sum(increase(c_total[1h]))", {"c_total"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names

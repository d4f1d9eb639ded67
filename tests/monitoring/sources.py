"""What the dashboard and the alerting rules query: their PromQL, and the metric names in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "sidecar-rules.yaml"
RULES_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "sidecar-rules.test.yaml"
OPERATOR_RULES = ROOT / "deploy" / "prometheus" / "prometheusrule.yaml"
MAKE_OPERATOR_RULES = ROOT / "deploy" / "prometheus" / "make_prometheusrule.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "sidecar-dashboard.json"

# PromQL words that look like metric names: aggregation modifiers and binary operators.
# Function names are recognised by the `(` that follows them.
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left"}
_KEYWORDS |= {"group_right", "bool", "offset", "inf", "nan"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_LABEL_LISTS = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GRAFANA_VARS = re.compile(r"\$(\{[^}]*\}|\w+)")
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, labels or keywords)."""
    text = _GRAFANA_VARS.sub("1", expr)
    text = _STRINGS.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    text = _RANGES.sub("", text)
    names = set()
    for m in _NAME.finditer(text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[a-z]*", word):
            continue
        names.add(word)
    return names


def rule_exprs() -> dict[str, str]:
    """Alert name -> expression, from the one rules source."""
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return doc


def dashboard_exprs() -> dict[str, str]:
    """ "Panel title / refId" -> expression, plus the template variables' queries."""
    doc = dashboard()
    out = {}
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            out[f"variable {var['name']}"] = re.sub(
                r"label_values\((.*),\s*\w+\)$", r"\1", var["definition"]
            )
    return out


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (alert names, dashboard panels)."""
    used: dict[str, set[str]] = {}
    for where, expr in {**rule_exprs(), **dashboard_exprs()}.items():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used

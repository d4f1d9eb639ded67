"""Write deploy/prometheus/prometheusrule.yaml from sidecar-rules.yaml, the one source.

`python deploy/prometheus/make_prometheusrule.py` rewrites it (`make rules`);
`--check` exits 1 when the committed file is not what this would write (a test runs it).
The rule groups are copied as text, indented under `spec:`, so comments, expressions and
annotations are byte for byte the ones promtool checks and tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "sidecar-rules.yaml"
TARGET = HERE / "prometheusrule.yaml"

_HEADER = """\
# GENERATED from sidecar-rules.yaml by make_prometheusrule.py (`make rules`): do not edit.
# The Prometheus operator's PrometheusRule with the same rule groups. An operator whose
# ruleSelector matches on labels (kube-prometheus-stack: `release: <its release name>`)
# needs that label added under metadata.labels.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: sidecar
  labels:
    app.kubernetes.io/name: sidecar
    app.kubernetes.io/component: alerting-rules
spec:
"""


def render(source: str) -> str:
    lines = source.splitlines()
    try:
        start = lines.index("groups:")
    except ValueError:
        raise SystemExit(f"{SOURCE}: no top-level `groups:` line") from None
    body = ["  " + line if line else "" for line in lines[start:]]
    return _HEADER + "\n".join(body) + "\n"


def main(argv: list[str]) -> int:
    want = render(SOURCE.read_text())
    if argv[1:] == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != want:
            print(f"{TARGET} is out of date: run `make rules`", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print("usage: make_prometheusrule.py [--check]", file=sys.stderr)
        return 2
    TARGET.write_text(want)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

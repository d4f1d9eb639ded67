"""The deploy manifests pass the checks a cluster would make: `kubernetes-validate
--strict` for every supported Kubernetes version (1.29+), Pod Security "restricted" with
the upstream admission library, `helm lint`, and the pod's own invariants (socket, probes,
shutdown budget, memory). Each validator is also shown failing on a broken pod."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from pydantic import ValidationError

from tests.deploy import pod
from tests.deploy.render import (
    CASES,
    CHART,
    MANIFEST,
    MIN_KUBE,
    VALUES,
    docs,
    helm,
    helm_template,
    rendered,
    run,
    tools,
)

# Building helm cold (tools/deploy-tools.sh) takes minutes; `make test` does it first.
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]

KUBE_VERSIONS = [
    v for v in all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 29)
]  # every version the installed kubernetes-validate knows, from the first native-sidecar one
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Strict schema errors of one object for every supported version ([] when valid)."""
    if (doc["apiVersion"], doc["kind"]) in CRDS:
        return []  # no schema ships for the Prometheus operator's kinds; helm lint parses them
    errors = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{version}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{version}: {exc}")
    return errors


def pod_security(text: str) -> tuple[int, str]:
    out = run(tools()["PSA"], "-level", "restricted", "-versions", "v1.29,latest", "-", stdin=text)
    return out.returncode, out.stdout + out.stderr


def deployments(text: str) -> list[dict[str, Any]]:
    return [d for d in docs(text) if d["kind"] == "Deployment"]


def test_kube_versions_cover_the_supported_range() -> None:
    assert KUBE_VERSIONS[0] == "1.29.0"
    assert len(KUBE_VERSIONS) >= 9  # 1.29 .. 1.37 with kubernetes-validate 1.37


@pytest.mark.parametrize("case", CASES)
def test_schema_strict(case: str) -> None:
    objects = docs(rendered(case).text)
    assert objects, f"{case} rendered nothing"
    assert [e for d in objects for e in schema_errors(d)] == []


@pytest.mark.parametrize("case", CASES)
def test_pod_security_restricted(case: str) -> None:
    code, out = pod_security(rendered(case).text)
    assert code == 0, out
    assert "pass Deployment/" in out and "restricted:v1.29" in out and "restricted:latest" in out


@pytest.mark.parametrize("case", CASES)
def test_pod_invariants(case: str) -> None:
    (deployment,) = deployments(rendered(case).text)
    assert pod.problems(deployment) == []


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.name if v else "default")
def test_helm_lint(values: Any) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", MIN_KUBE]
    out = helm(*args, *(["-f", str(values)] if values else []))
    assert out.returncode == 0, out.stdout + out.stderr


def test_helm_default_is_the_plain_manifest() -> None:
    """The chart's defaults make the manifest's pod: one set of numbers, explained once."""

    def normal(doc: dict[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(pod.pod_spec(doc))
        for c in spec["initContainers"] + spec["containers"]:
            c.pop("imagePullPolicy", None)
        return spec

    (chart,) = deployments(helm_template())
    (plain,) = docs(MANIFEST.read_text())
    assert normal(chart) == normal(plain)


def test_helm_grace_period_follows_the_budget() -> None:
    text = helm_template(sets=("agent.drainSeconds=60", "sidecar.shutdownTimeoutSeconds=10"))
    (deployment,) = deployments(text)
    assert pod.pod_spec(deployment)["terminationGracePeriodSeconds"] == 60 + 10 + 1 + 4
    assert pod.problems(deployment, agent_drain=60) == []
    assert pod.problems(deployment, agent_drain=61) != []


def test_helm_secured_settings() -> None:
    """SASL_SSL: CA and password are files from Secrets; mTLS: cert and key too; env mode
    takes the password from a secretKeyRef; OAUTHBEARER reads a projected token."""
    env = {
        v.name.removesuffix("-values.yaml"): pod.env(
            pod.pod_spec(deployments(helm_template(v))[0])["initContainers"][1]
        )
        for v in VALUES
    }
    assert env["sasl-ssl"]["SIDECAR_SASL_PASSWORD_FILE"] == "/etc/sidecar/sasl/password"
    assert env["sasl-ssl"]["SIDECAR_SSL_CA_FILE"] == "/etc/sidecar/tls/ca.crt"
    assert env["mtls"]["SIDECAR_SSL_KEY_FILE"] == "/etc/sidecar/tls/tls.key"
    assert env["mtls"]["SIDECAR_SSL_KEY_PASSWORD_FILE"] == "/etc/sidecar/tls/key-password"
    assert env["sasl-plain-env"]["SIDECAR_SASL_PASSWORD"] == {
        "secretKeyRef": {"name": "kafka-agent", "key": "kafka-password"}
    }
    assert env["oauthbearer"]["SIDECAR_SASL_OAUTH_TOKEN_FILE"] == "/var/run/secrets/kafka/token"


@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (("kafka.securityProtocol=TLS",), "/kafka/securityProtocol': value must be one of"),
        (("sidecar.maxPendingBytes=lots",), "/sidecar/maxPendingBytes': got string"),
        (("kafka.securityProtocol=SASL_SSL",), "kafka.sasl.mechanism is required"),
        (
            ("kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=SCRAM-SHA-512"),
            "needs kafka.sasl.username and kafka.sasl.existingSecret",
        ),
        (("kafka.tls.existingSecret=ca",), "does not use TLS"),
        (
            ("kafka.securityProtocol=SSL", "kafka.tls.existingSecret=ca", "kafka.tls.certKey=c"),
            "go together",
        ),
    ],
)
def test_helm_refuses_settings_that_cannot_work(sets: tuple[str, ...], reason: str) -> None:
    args = ["template", "agent", str(CHART), "--kube-version", MIN_KUBE]
    out = helm(*args, *(a for s in sets for a in ("--set", s)))
    assert out.returncode != 0
    assert reason in out.stderr


# The validators can fail: each broken pod below is refused.


def broken(mutate: Any) -> dict[str, Any]:
    (doc,) = docs(MANIFEST.read_text())
    mutate(pod.pod_spec(doc))
    return doc


def _drop_seccomp(spec: dict[str, Any]) -> None:  # the pod of issue 9 as filed
    del spec["securityContext"]["seccompProfile"]
    del spec["containers"][0]["securityContext"]["seccompProfile"]


def _escalate(spec: dict[str, Any]) -> None:
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _keep_caps(spec: dict[str, Any]) -> None:
    del spec["initContainers"][1]["securityContext"]["capabilities"]


@pytest.mark.parametrize("mutate", [_drop_seccomp, _escalate, _keep_caps])
def test_pod_security_refuses_a_broken_pod(mutate: Any) -> None:
    code, out = pod_security(yaml.safe_dump(broken(mutate)))
    assert code == 1
    assert "FAIL Deployment/agent restricted:v1.29" in out


def test_pod_security_refuses_nothing_to_check() -> None:
    code, out = pod_security("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert code == 1 and "no pod-bearing object" in out


def test_schema_refuses_a_broken_pod() -> None:
    def typo(spec: dict[str, Any]) -> None:
        spec["initContainers"][1]["restartPolicyy"] = spec["initContainers"][1].pop("restartPolicy")

    def wrong_type(spec: dict[str, Any]) -> None:
        spec["terminationGracePeriodSeconds"] = "45s"

    for mutate in (typo, wrong_type):
        errors = schema_errors(broken(mutate))
        assert len(errors) == len(KUBE_VERSIONS), errors


def _reorder(spec: dict[str, Any]) -> None:  # what a careless strategic-merge patch does
    spec["initContainers"].reverse()


def _short_grace(spec: dict[str, Any]) -> None:  # the issue's 35 s next to a 25 s drain
    spec["terminationGracePeriodSeconds"] = 35


def _loopback(spec: dict[str, Any]) -> None:
    spec["initContainers"][1]["env"] = [
        e for e in spec["initContainers"][1]["env"] if e["name"] != "SIDECAR_HTTP_HOST"
    ]


def _small_memory(spec: dict[str, Any]) -> None:
    spec["initContainers"][1]["resources"]["limits"]["memory"] = "96Mi"


def _many_streams(spec: dict[str, Any]) -> None:
    """The limit covers pending records, but not the open streams let in."""
    for e in spec["initContainers"][1]["env"]:
        if e["name"] == "SIDECAR_MAX_OPEN_STREAM_BYTES":
            e["value"] = str(64 * pod.MiB)


def _other_uid(spec: dict[str, Any]) -> None:
    spec["initContainers"][0]["securityContext"]["runAsUser"] = 10002


def _other_socket(spec: dict[str, Any]) -> None:
    spec["containers"][0]["env"][0]["value"] = "/run/sidecar/sidecar.sock"


@pytest.mark.parametrize(
    "mutate",
    [_reorder, _short_grace, _loopback, _small_memory, _many_streams, _other_socket, _other_uid],
)
def test_invariants_refuse_a_broken_pod(mutate: Any) -> None:
    assert pod.problems(broken(mutate)) != []


RULES = CHART.parents[1] / "prometheus" / "sidecar-rules.yaml"


def rule_groups(text: str) -> Any:
    (rule,) = (d for d in docs(text) if d["kind"] == "PrometheusRule")
    return rule["spec"]["groups"]


def test_helm_prometheus_rule_is_the_rules_file(tmp_path: Path) -> None:
    """One source: the chart's rules file is a link to deploy/prometheus/sidecar-rules.yaml,
    and `helm package` carries its content (the packaged chart renders the same rules)."""
    link = CHART / "files" / "sidecar-rules.yaml"
    assert link.is_symlink() and link.resolve() == RULES.resolve()
    expected = yaml.safe_load(RULES.read_text())["groups"]
    assert rule_groups(helm_template(sets=("metrics.prometheusRule.enabled=true",))) == expected

    out = helm("package", str(CHART), "--destination", str(tmp_path))
    assert out.returncode == 0, out.stderr
    (package,) = tmp_path.glob("sidecar-*.tgz")
    args = ["template", "agent", str(package), "--kube-version", MIN_KUBE]
    out = helm(*args, "--set", "metrics.prometheusRule.enabled=true")
    assert out.returncode == 0, out.stderr
    assert rule_groups(out.stdout) == expected


def run_configuration(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Build `sidecar run`'s settings from a container's SIDECAR_* environment (a value
    from a Secret stands in as a string): AssertionError for a name that is no setting (a
    misspelt one would be ignored without a word), ValidationError for a combination the
    settings model refuses (what `sidecar run` exits 2 for)."""
    from sidecar.config import Config, env_of

    known = {env_of(field) for field in Config.model_fields}
    env = {e["name"]: e.get("value", "from-a-secret") for e in container.get("env", [])}
    assert {n for n in env if n.startswith("SIDECAR_")} - known == set()
    for name in [n for n in os.environ if n.startswith("SIDECAR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    Config()


@pytest.mark.parametrize("case", CASES)
def test_sidecar_env_is_a_run_configuration(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for deployment in deployments(rendered(case).text):
        run_configuration(pod.pod_spec(deployment)["initContainers"][1], monkeypatch)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("SIDECAR_SHUTDOWN_TIMEOUTS", "25", AssertionError),  # misspelt
        ("SIDECAR_SECURITY_PROTOCOL", "SASL_SSL", ValidationError),  # no mechanism
    ],
)
def test_run_configuration_refuses_a_broken_env(
    name: str, value: str, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    (doc,) = docs(MANIFEST.read_text())
    sidecar = pod.pod_spec(doc)["initContainers"][1]
    sidecar["env"].append({"name": name, "value": value})
    with pytest.raises(error):
        run_configuration(sidecar, monkeypatch)

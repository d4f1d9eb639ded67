"""What the deploy tests check: the plain manifest, the kustomize outputs and `helm
template` for each values set, rendered by the real tools that tools/deploy-tools.sh
builds once (helm, kustomize, and tools/psa: Pod Security admission, offline)."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFEST = DEPLOY / "kubernetes" / "agent-with-sidecar.yaml"
CHART = DEPLOY / "helm" / "sidecar"
KUSTOMIZATIONS = [
    DEPLOY / "kustomize" / "base",
    *sorted((DEPLOY / "kustomize" / "overlays").iterdir()),
]
VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
MIN_KUBE = "1.29.0"  # native sidecars: on by default from 1.29

Doc = dict[str, Any]


@functools.cache
def tools() -> dict[str, str]:
    """NAME -> path of helm, kustomize and psa (built on first use, then cached)."""
    out = subprocess.run(
        [str(ROOT / "tools" / "deploy-tools.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"tools/deploy-tools.sh failed:\n{out.stderr}")
    return dict(line.split("=", 1) for line in out.stdout.split())


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return run(tools()["HELM"], *args)


def helm_template(*values: Path | str, kube: str = MIN_KUBE, sets: tuple[str, ...] = ()) -> str:
    args = ["template", "agent", str(CHART), "--kube-version", kube]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    if out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def kustomize_build(path: Path) -> str:
    out = run(tools()["KUSTOMIZE"], "build", str(path))
    if out.returncode != 0:
        raise AssertionError(f"kustomize build {path} failed:\n{out.stderr}")
    return out.stdout


def docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass(frozen=True)
class Rendered:
    name: str
    text: str


def rendered(name: str) -> Rendered:
    """One of CASES, rendered."""
    if name == "manifest":
        return Rendered(name, MANIFEST.read_text())
    kind, _, which = name.partition(":")
    if kind == "kustomize":
        return Rendered(name, kustomize_build(DEPLOY / "kustomize" / which))
    if which == "default":
        return Rendered(name, helm_template())
    return Rendered(name, helm_template(CHART / "ci" / f"{which}-values.yaml"))


CASES = [
    "manifest",
    *(f"kustomize:{p.relative_to(DEPLOY / 'kustomize')}" for p in KUSTOMIZATIONS),
    "helm:default",
    *(f"helm:{v.name.removesuffix('-values.yaml')}" for v in VALUES),
]

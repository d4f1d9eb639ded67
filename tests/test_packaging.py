"""What ships: the wheels hold only their own package, the image's lock covers every
runtime dependency, and the contract the README and `--help` point at is in the repo."""

from __future__ import annotations

import email.parser
import re
import subprocess
import sys
import tomllib
import typing
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.model import TerminalReason
from sidecar_client.protocol.replies import ErrorCode

ROOT = Path(__file__).resolve().parent.parent
# The image's platform, for dependency markers.
LINUX_311 = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}


def build_wheel(project: Path, out: Path) -> zipfile.ZipFile:
    # pip is the ordinary client here: it honours the host's pip configuration (CA, index).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(project)],
        check=True,
        timeout=170,
    )
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def top_level(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/", 1)[0] for name in wheel.namelist()}


@pytest.mark.timeout(180)
def test_server_wheel_holds_only_the_sidecar_package(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT, tmp_path / "server")
    names = wheel.namelist()
    assert top_level(wheel) == {"sidecar", "sidecar-0.1.0.dist-info"}, sorted(top_level(wheel))
    # What production runs is there...
    for module in ("cli.py", "server.py", "sink/kafka.py", "source/listener.py", "metrics.py"):
        assert f"sidecar/{module}" in names
    # ...and the development tooling is not, under any name.
    for name in names:
        assert not re.search(r"(^|/)(testbed|demo|bench|tests)(/|\.py$)", name), name
    entry_points = wheel.read("sidecar-0.1.0.dist-info/entry_points.txt").decode()
    assert "sidecar = sidecar.cli:main" in entry_points
    requires = [Requirement(r) for r in metadata(wheel).get_all("Requires-Dist") or []]
    assert "sidecar-client" in {canonicalize_name(r.name) for r in requires}


@pytest.mark.timeout(180)
def test_client_wheel_holds_only_the_client_package(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT / "client", tmp_path / "client")
    assert top_level(wheel) == {"sidecar_client", "sidecar_client-0.1.0.dist-info"}
    assert "sidecar_client/py.typed" in wheel.namelist()


def project_requirements(pyproject: Path) -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def test_image_lock_pins_every_runtime_dependency_with_hashes() -> None:
    """requirements/image.txt is what the Dockerfile installs (--require-hashes): a
    dependency added to either pyproject without `make lock` would break the image."""
    lock = (ROOT / "requirements" / "image.txt").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])
    pinned: dict[str, str] = {}
    for entry in entries:
        head = entry.split()[0]
        name, _, version = head.partition("==")
        assert version, f"not pinned: {head}"
        assert "--hash=sha256:" in entry, f"no hash: {head}"
        pinned[canonicalize_name(name)] = version
    local = {"sidecar", "sidecar-client"}
    assert not local & pinned.keys(), "the local projects are installed --no-deps, not locked"
    for pyproject in (ROOT / "pyproject.toml", ROOT / "client" / "pyproject.toml"):
        for req in project_requirements(pyproject):
            name = canonicalize_name(req.name)
            if name in local or not (req.marker is None or req.marker.evaluate(LINUX_311)):
                continue
            assert name in pinned, f"{name} ({pyproject}) is missing: run `make lock`"
            assert req.specifier.contains(pinned[name]), f"{name}=={pinned[name]} !~ {req}"


def test_contract_ships_in_the_repo_and_is_linked() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for must in ("stream_owned", "writer_uid", "sidecar_instance", "delivery_failed", "/readyz"):
        assert must in doc
    readme = (ROOT / "README.md").read_text()
    assert "](docs/protocol.md)" in readme
    assert "../shared" not in readme
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "docs/protocol.md" in result.output


def test_contract_names_every_error_code_and_terminal_reason() -> None:
    """docs/protocol.md keeps up with the code: a new error code or terminal reason in
    the code fails here until the contract documents it."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"| `{code.value}` |" in doc, f"error code {code.value} not in the table of §3"
    for reason in typing.get_args(TerminalReason):
        assert f"`{reason}`" in doc, f"terminal_reason {reason} not in §5"

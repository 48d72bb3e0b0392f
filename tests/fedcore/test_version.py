"""Which Tessera releases may run one job together, and where the release is named."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fedcore.version import TESSERA_VERSION, compatible


@pytest.mark.parametrize(
    ("ours", "theirs", "ok"),
    [
        ("1.2.0", "1.9.3", True),  # same major
        ("1.2.0", "2.0.0", False),
        ("0.1.0", "0.1.7", True),  # 0.x: the minor is the breaking part
        ("0.1.0", "0.2.0", False),
        ("0.1.0", "1.1.0", False),
    ],
)
def test_same_major_or_same_minor_below_one(ours: str, theirs: str, ok: bool) -> None:
    assert compatible(ours, theirs) is ok


def test_the_installed_version_is_compatible_with_itself() -> None:
    assert compatible(TESSERA_VERSION, TESSERA_VERSION)


def test_garbage_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a Tessera version"):
        compatible("1.0", "banana")


def test_every_place_that_names_the_release_follows_pyproject() -> None:
    """pyproject.toml is the one version source: the chart's appVersion, the image tags of the
    example env files and the CLI all say the installed version."""
    root = Path(__file__).resolve().parents[2]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert TESSERA_VERSION == declared
    chart = (root / "deploy" / "helm" / "tessera" / "Chart.yaml").read_text()
    assert re.search(r'^appVersion: "?([^"\n]+)"?$', chart, re.M).group(1) == declared  # type: ignore[union-attr]
    values = (root / "deploy" / "helm" / "tessera" / "values.yaml").read_text()
    tags = re.findall(r"repository: tessera/\w+, tag: \"([^\"]+)\"", values)
    assert tags == [declared, declared], "values.yaml: images.service and images.runtime"
    for env in (root / "deploy" / "env").glob("*.sh"):
        for tag in re.findall(r"^\w+_IMAGE=tessera/\w+:(\S+)$", env.read_text(), re.M):
            assert tag == declared, env.name
    cli = [sys.executable, "-c", "from tessera.cli import app; app()", "--version"]
    out = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"tessera {declared}"

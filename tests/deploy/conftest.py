"""Fixtures of the deploy tests: the tools, and the two example parties with keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import Manifest, Tools, env_file, find_tools, render, write_party_keys


@pytest.fixture(scope="session")
def tools() -> Tools:
    return find_tools()


@pytest.fixture(scope="session")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with keys/<party>/ for both example parties, where env files are written."""
    path = tmp_path_factory.mktemp("env")
    for party in ("10000", "20000"):
        write_party_keys(path, party)
    return path


@pytest.fixture(scope="session")
def party_a(tools: Tools, env_dir: Path) -> list[Manifest]:
    return render(tools, env_file(env_dir, "10000"))


@pytest.fixture(scope="session")
def party_b(tools: Tools, env_dir: Path) -> list[Manifest]:
    return render(tools, env_file(env_dir, "20000"))

"""Fixtures of the flow_server tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_helpers import CATALOG

from flow_server.catalog import Catalog


@pytest.fixture
def catalog() -> Catalog:
    return CATALOG


@pytest.fixture
def data_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    guest, host = tmp_path / "guest.csv", tmp_path / "host.csv"
    guest.write_text("id,y,x0\n1,0,0.5\n")
    host.write_text("id,x1\n1,0.2\n")
    return guest, host, tmp_path / "out"

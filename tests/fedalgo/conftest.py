"""Fixtures for the fedalgo tests (helpers live in fedalgo_helpers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fedalgo_helpers import load_demo_module, read_rows, write_rows


@pytest.fixture(scope="session")
def demo_module() -> Any:
    return load_demo_module()


@pytest.fixture(scope="session")
def demo_data(demo_module: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(guest CSV, host CSV) from make_breast_split, written once per session."""
    return demo_module.make_breast_split(tmp_path_factory.mktemp("demo"), seed=0)


@pytest.fixture
def subset(tmp_path: Path) -> Callable[[Path, int], Path]:
    """Copy the first ``n`` rows of a CSV (keeps hetero_lr tests fast)."""

    def make(path: Path, n: int) -> Path:
        header, rows = read_rows(path)
        return write_rows(tmp_path / f"head{n}_{path.name}", header, rows[:n])

    return make

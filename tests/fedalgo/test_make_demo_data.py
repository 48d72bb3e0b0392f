"""examples/make_demo_data.py: the demo split's shape, overlap and determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedalgo_helpers import read_rows


def test_split_shape_and_overlap(tmp_path: Path, demo_module: Any) -> None:
    guest, host = demo_module.make_breast_split(tmp_path, seed=0)
    g_header, g_rows = read_rows(guest)
    h_header, h_rows = read_rows(host)
    assert g_header == ["id", "y"] + [f"x{j}" for j in range(10)]
    assert h_header == ["id"] + [f"x{j}" for j in range(20)]
    g_ids, h_ids = [r[0] for r in g_rows], [r[0] for r in h_rows]
    assert len(set(g_ids)) == len(g_ids) and len(set(h_ids)) == len(h_ids)
    common = set(g_ids) & set(h_ids)
    assert len(set(g_ids) | set(h_ids)) == 569
    assert 0.03 < 1 - len(common) / len(g_ids) < 0.07 and 0.03 < 1 - len(common) / len(h_ids) < 0.07
    assert [i for i in g_ids if i in common] != [i for i in h_ids if i in common]  # own orders
    assert {r[1] for r in g_rows} == {"0", "1"}


def test_same_seed_same_files(tmp_path: Path, demo_module: Any) -> None:
    a = demo_module.make_breast_split(tmp_path / "a", seed=3)
    b = demo_module.make_breast_split(tmp_path / "b", seed=3)
    c = demo_module.make_breast_split(tmp_path / "c", seed=4)
    assert [p.read_text() for p in a] == [p.read_text() for p in b]
    assert a[0].read_text() != c[0].read_text()

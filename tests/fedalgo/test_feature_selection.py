"""feature_selection: by IV (from a binning model) or by a SecureBoost model's importance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fedalgo_helpers import GUEST, HOST, party, read_rows

from fedalgo.components.feature_selection import select
from fedalgo.errors import ArgumentError
from fedalgo.federation import run_parties


def run(
    component: str,
    tmp: Path,
    guest: Path,
    host: Path,
    args: dict[str, Any],
    models: tuple[Path, Path] | None = None,
) -> None:
    g_inputs: dict[str, Path] = {"data": guest}
    h_inputs: dict[str, Path] = {"data": host}
    outputs: tuple[str, ...] = ("model",) if component == "binning" else ("model", "predictions")
    if models is not None:
        g_inputs["model"], h_inputs["model"] = models
        outputs = ("data", "model")
    run_parties(
        component,
        {
            GUEST: party("guest", tmp / "g", outputs, args, **g_inputs),
            HOST: party("host", tmp / "h", outputs, **h_inputs),
        },
    )


def models(root: Path) -> tuple[Path, Path]:
    return root / "g" / "model", root / "h" / "model"


def test_select_rules() -> None:
    scores = {"a": 0.5, "b": 0.01, "host1_f0": 0.3, "host1_f1": 0.3}
    names = ["a", "b", "c", "host1_f0", "host1_f1"]
    assert select(scores, names, "iv-threshold", threshold=0.02, k=1) == {
        "a",
        "host1_f0",
        "host1_f1",
    }
    assert select(scores, names, "iv-top-k", threshold=0, k=2) == {"a", "host1_f0"}


def test_iv_top_k_across_parties(tmp_path: Path, fl_data: Path, subset) -> None:
    guest = subset(fl_data / "breast_hetero_guest.csv", 200)
    host = subset(fl_data / "breast_hetero_host.csv", 200)
    binned = tmp_path / "bin"
    run("binning", binned, guest, host, {"key-bits": 1024, "bins": 6})
    bmodel = json.loads((binned / "g" / "model").read_text())
    hmodel = json.loads((binned / "h" / "model").read_text())
    everything = {f["name"]: f["iv"] for f in bmodel["features"]}
    everything.update({f"host{HOST}_f{j}": f["iv"] for j, f in enumerate(hmodel["features"])})
    best = set(sorted(everything, key=lambda n: -everything[n])[:7])

    out = tmp_path / "sel"
    run("feature_selection", out, guest, host, {"method": "iv-top-k", "k": 7}, models(binned))
    g_header, g_rows = read_rows(out / "g" / "data")
    h_header, h_rows = read_rows(out / "h" / "data")
    kept_host = {f"host{HOST}_f{int(h[1:])}" for h in h_header[1:]}
    assert set(g_header[2:]) | kept_host == best
    assert g_header[:2] == ["id", "y"] and h_header[0] == "id"
    assert len(g_rows) == len(h_rows) == 200
    # Values are copied as they were written.
    _, src = read_rows(host)
    assert h_rows[0][1:] == [src[0][int(h[1:]) + 1] for h in h_header[1:]]
    host_model = json.loads((out / "h" / "model").read_text())
    assert set(host_model["kept"]) | set(host_model["dropped"]) == {f"x{j}" for j in range(20)}

    thr = tmp_path / "thr"
    run(
        "feature_selection",
        thr,
        guest,
        host,
        {"method": "iv-threshold", "threshold": 1.0},
        models(binned),
    )
    g_header, _ = read_rows(thr / "g" / "data")
    assert set(g_header[2:]) == {f["name"] for f in bmodel["features"] if f["iv"] >= 1.0}


def test_importance_top_k(tmp_path: Path, fl_data: Path, subset) -> None:
    guest = subset(fl_data / "breast_hetero_guest.csv", 150)
    host = subset(fl_data / "breast_hetero_host.csv", 150)
    boosted = tmp_path / "boost"
    run(
        "hetero_secureboost",
        boosted,
        guest,
        host,
        {"key-bits": 1024, "num-trees": 2, "max-depth": 2, "importance-type": "gain"},
    )
    importance = json.loads((boosted / "g" / "model").read_text())["feature_importance"]["gain"]
    top = set(sorted(importance, key=lambda n: -importance[n])[:3])
    out = tmp_path / "sel"
    run(
        "feature_selection",
        out,
        guest,
        host,
        {"method": "importance-top-k", "k": 3},
        models(boosted),
    )
    g_header, _ = read_rows(out / "g" / "data")
    h_header, _ = read_rows(out / "h" / "data")
    assert set(g_header[2:]) | {f"host{HOST}_f{int(h[1:])}" for h in h_header[1:]} == top

    with pytest.raises(ArgumentError, match="binning model"):
        run(
            "feature_selection",
            tmp_path / "bad",
            guest,
            host,
            {"method": "iv-top-k"},
            models(boosted),
        )
    with pytest.raises(ArgumentError, match="method"):
        run(
            "feature_selection",
            tmp_path / "bad2",
            guest,
            host,
            {"method": "random"},
            models(boosted),
        )

"""scale: agrees with scikit-learn, leaves id and label alone, and saves reusable parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fedalgo_helpers import GUEST, HOST, party, read_matrix, read_rows, write_rows
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from fedalgo.components.scale import apply_scaling
from fedalgo.errors import ArgumentError, DataError
from fedalgo.federation import run_parties


def run_scale(tmp_path: Path, guest: Path, host: Path, args: dict | None = None):
    return run_parties(
        "scale",
        {
            GUEST: party("guest", tmp_path / "g", ("data", "model"), args, data=guest),
            HOST: party("host", tmp_path / "h", ("data", "model"), args, data=host),
        },
        timeout_s=30,
    )


@pytest.mark.parametrize(
    ("method", "reference"), [("standard", StandardScaler), ("min-max", MinMaxScaler)]
)
def test_matches_sklearn(tmp_path: Path, demo_data: tuple[Path, Path], method, reference) -> None:
    guest_csv, host_csv = demo_data
    result = run_scale(tmp_path, guest_csv, host_csv, {"method": method})
    assert result.federation.total_bytes == 0  # purely local
    for side, source in (("g", guest_csv), ("h", host_csv)):
        header, ids, raw = read_matrix(source)
        out_header, out_ids, scaled = read_matrix(tmp_path / side / "data")
        assert (out_header, out_ids) == (header, ids)
        first = 1 if side == "g" else 0  # the guest's label column is untouched
        assert np.array_equal(scaled[:, :first], raw[:, :first])
        expected = reference().fit_transform(raw[:, first:])
        assert np.allclose(scaled[:, first:], expected, atol=1e-12)
        model = json.loads((tmp_path / side / "model").read_text())
        assert model["method"] == method and model["columns"] == header[1 + first :]
        again = apply_scaling(model, header[1 + first :], raw[:, first:])
        assert np.allclose(again, expected, atol=1e-12)


def test_label_text_is_kept_verbatim(tmp_path: Path) -> None:
    guest = write_rows(tmp_path / "g.csv", ["id", "y", "a"], [["p", "1", 1], ["q", "0", 3]])
    host = write_rows(tmp_path / "hh.csv", ["id", "b", "c"], [["p", 5, 1], ["q", 5, 2]])
    run_scale(tmp_path, guest, host)
    assert read_rows(tmp_path / "g" / "data")[1] == [["p", "1", "-1.0"], ["q", "0", "1.0"]]
    # A constant column maps to 0, not NaN.
    assert read_rows(tmp_path / "h" / "data")[1] == [["p", "0.0", "-1.0"], ["q", "0.0", "1.0"]]


def test_bad_method_and_bad_values(tmp_path: Path) -> None:
    guest = write_rows(tmp_path / "g.csv", ["id", "y", "a"], [["p", "1", 1]])
    host = write_rows(tmp_path / "hh.csv", ["id", "b"], [["p", "x"]])
    with pytest.raises(ArgumentError, match="'method' should be 'standard' or 'min-max'"):
        run_scale(tmp_path, guest, guest, {"method": "robust"})
    with pytest.raises(DataError, match="column 'b' has non-numeric value 'x'"):
        run_scale(tmp_path, guest, host)

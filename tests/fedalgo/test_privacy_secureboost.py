"""What each party of hetero_secureboost and hetero binning receives, recorded on the wire.

Hosts must only get ciphertexts of the guest's values (never a gradient, hessian or label in the
clear) plus row/node bookkeeping; the guest must never get a host's feature values, column names
or split thresholds, only ciphertexts under its own key, bin counts and left/right booleans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fedalgo_helpers import GUEST, HOST, party, read_matrix, read_rows

from fedalgo.federation import InMemoryFederation, run_parties

ROWS = 120


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def _is_ciphertext(v: Any, n: int) -> bool:
    return isinstance(v, int) and 0 < v < n * n and v.bit_length() > 1500


def test_secureboost_wire_privacy(tmp_path: Path, fl_data: Path, subset) -> None:
    guest_csv = subset(fl_data / "breast_hetero_guest.csv", ROWS)
    host_csv = subset(fl_data / "breast_hetero_host.csv", ROWS)
    hub = InMemoryFederation(record=True)
    args = {"key-bits": 1024, "num-trees": 2, "max-depth": 3, "subsample": 0.9, "random-seed": 3}
    outputs = ("model", "predictions")
    run_parties(
        "hetero_secureboost",
        {
            GUEST: party("guest", tmp_path / "g", outputs, args, data=guest_csv),
            HOST: party("host", tmp_path / "h", outputs, data=host_csv),
        },
        federation=hub,
    )
    _, _, g = read_matrix(guest_csv)
    y = g[:, 0]
    host_header, _ = read_rows(host_csv)
    guest_header, _ = read_rows(guest_csv)
    host_only = set(host_header) - set(guest_header)  # both sides name columns x0, x1, ...
    _, _, x_host = read_matrix(host_csv)
    host_model = json.loads((tmp_path / "h" / "model").read_text())
    assert host_model["splits"], "the test needs some host splits to check"
    thresholds = {s["threshold"] for s in host_model["splits"].values()}

    to_host = hub.received_by(HOST)
    assert {re.sub(r"/\d+", "/*", m.tag) for m in to_host} == {
        "secureboost/setup",
        "secureboost/*/gh",
        "secureboost/*/*/nodes",
        "secureboost/*/*/splits",
    }
    setup = next(m.value for m in to_host if m.tag == "secureboost/setup")
    n = setup["public_key_n"]
    for m in to_host:
        if m.tag.endswith("/gh"):
            assert set(m.value) == {"rows", "gh"}
            assert m.value["rows"].dtype.kind == "i"  # which rows are sampled, not values
            cts = m.value["gh"]["ciphertexts"]
            assert len(cts) == len(m.value["rows"]) and all(_is_ciphertext(c, n) for c in cts)
        elif m.tag.endswith("/nodes") and m.value is not None:
            assert m.value["node_of_row"].dtype.kind == "i"
            assert not np.array_equal(m.value["node_of_row"], y)
        if m.tag != "secureboost/setup":
            # After the setup: ciphertexts, row and node numbers, never a float or a label.
            for v in leaves(m.value):
                if isinstance(v, np.ndarray):
                    assert v.dtype.kind in "iu"
                    assert v.shape == (ROWS,) or m.tag.endswith("/gh")
                else:
                    assert v is None or isinstance(v, int | str)
                    assert not isinstance(v, float)

    to_guest = hub.received_by(GUEST)
    assert {re.sub(r"/\d+", "/*", m.tag) for m in to_guest} == {
        "secureboost/host_info",
        "secureboost/host_bins",
        "secureboost/*/*/hist",
        "secureboost/*/*/left",
    }
    for m in to_guest:
        values = list(leaves(m.value))
        # No float at all: no feature value, no threshold, no plaintext sum.
        assert not any(isinstance(v, float) for v in values)
        assert not any(isinstance(v, str) and v in host_only for v in values)
        for v in values:
            if isinstance(v, np.ndarray):
                assert v.dtype == np.bool_  # which rows go left, nothing more
                for column in x_host.T:
                    assert v.shape != column.shape or not np.allclose(v, column)
        if m.tag.endswith("/hist"):
            assert all(_is_ciphertext(c, n) for c in m.value["ciphertexts"])
    guest_model = (tmp_path / "g" / "model").read_text()
    for t in thresholds:
        assert repr(t) not in guest_model
    for name in host_only:
        assert f'"{name}"' not in guest_model

    # Predicting with the model: the host gets the model kind, the guest booleans per host split.
    hub = InMemoryFederation(record=True)
    run_parties(
        "predict",
        {
            GUEST: party(
                "guest",
                tmp_path / "pg",
                ("predictions",),
                data=guest_csv,
                model=tmp_path / "g" / "model",
            ),
            HOST: party(
                "host",
                tmp_path / "ph",
                ("predictions",),
                data=host_csv,
                model=tmp_path / "h" / "model",
            ),
        },
        federation=hub,
    )
    assert [(m.tag, m.value) for m in hub.received_by(HOST)] == [
        ("predict/kind", "hetero_secureboost")
    ]
    answer = next(m.value for m in hub.received_by(GUEST) if m.tag == "predict/hetero_secureboost")
    assert set(answer) == set(host_model["splits"])
    assert all(v.dtype == np.bool_ and v.shape == (ROWS,) for v in answer.values())


def test_binning_wire_privacy(tmp_path: Path, fl_data: Path, subset) -> None:
    guest_csv = subset(fl_data / "breast_hetero_guest.csv", ROWS)
    host_csv = subset(fl_data / "breast_hetero_host.csv", ROWS)
    hub = InMemoryFederation(record=True)
    run_parties(
        "binning",
        {
            GUEST: party("guest", tmp_path / "g", ("model",), {"key-bits": 1024}, data=guest_csv),
            HOST: party("host", tmp_path / "h", ("model",), data=host_csv),
        },
        federation=hub,
    )
    host_model = json.loads((tmp_path / "h" / "model").read_text())
    splits = {s for f in host_model["features"] for s in f["splits"]}
    to_host = hub.received_by(HOST)
    assert [m.tag for m in to_host] == ["binning/setup", "binning/labels", "binning/iv"]
    labels = to_host[1].value
    n = labels["public_key_n"]
    assert all(_is_ciphertext(c, n) for c in labels["labels"]["ciphertexts"])
    assert len(to_host[2].value) == 20  # one IV per host column, nothing per bin

    for m in hub.received_by(GUEST):
        for v in leaves(m.value):
            assert not isinstance(v, float)  # no feature value, no split point
            if isinstance(v, np.ndarray):
                assert v.dtype.kind in "iu" and not np.isin(v, list(splits)).any()
        if m.tag == "binning/events":
            assert all(_is_ciphertext(c, n) for c in m.value["events"]["ciphertexts"])
    assert "splits" not in json.dumps(json.loads((tmp_path / "g" / "model").read_text())["hosts"])

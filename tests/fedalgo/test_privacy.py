"""What each party of hetero_lr actually receives, recorded on the wire.

The host must only ever get ciphertext-sized integers (its folded gradients) and control values
(never labels or residuals); the guest must only get ciphertexts under the host's key and partial
logits, never a host feature column, weight or gradient.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fedalgo_helpers import GUEST, HOST, party, read_matrix, train

from fedalgo.federation import InMemoryFederation, run_parties

ROWS, ITERATIONS = 60, 3


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def test_hetero_lr_wire_privacy(tmp_path: Path, fl_data: Path, subset) -> None:
    guest_csv = subset(fl_data / "breast_hetero_guest.csv", ROWS)
    host_csv = subset(fl_data / "breast_hetero_host.csv", ROWS)
    hub = InMemoryFederation(record=True)
    args = {"key-bits": 1024, "max-iter": ITERATIONS, "tol": 0}
    run_parties(
        "hetero_lr",
        {
            GUEST: party("guest", tmp_path / "g", ("model", "predictions"), args, data=guest_csv),
            HOST: party("host", tmp_path / "h", ("model", "predictions"), data=host_csv),
        },
        federation=hub,
    )
    _, _, g = read_matrix(guest_csv)
    _, _, x_host = read_matrix(host_csv)
    y, x_guest = g[:, 0], g[:, 1:]
    ref = train(x_guest, [x_host], y, max_iter=ITERATIONS)
    assert json.loads((tmp_path / "g" / "model").read_text())["key_bits"] == 1024

    # Everything the host received, by kind of tag.
    to_host = hub.received_by(HOST)
    assert {re.sub(r"/\d+", "/*", m.tag) for m in to_host} == {
        "hetero_lr/setup",
        "hetero_lr/*/*/gradient",
        "hetero_lr/*/stop",
    }
    setups = [m.value for m in to_host if m.tag == "hetero_lr/setup"]
    assert len(setups) == 1 and setups[0]["key_bits"] == 1024
    assert set(setups[0]) == {
        "key_bits",
        "learning_rate",
        "max_iter",
        "alpha",
        "batch_size",
        "decay",
        "tol",
        "seed",
        "fit_intercept",
    }
    host_key = next(m for m in hub.received_by(GUEST) if m.tag == "hetero_lr/host_key").value
    host_n, per_row = host_key["public_key_n"], host_key["per_row"]
    assert per_row == 2  # a 1024-bit plaintext holds fewer than 20 slots of this width
    for m in to_host:
        if m.tag.endswith("/gradient"):
            # Packed ciphertexts under the host's own key: all 20 features in two plaintexts.
            assert m.value["exponent"] == -14 and len(m.value["ciphertexts"]) == per_row
            assert all(0 < c < host_n**2 and c.bit_length() > 1900 for c in m.value["ciphertexts"])
        elif m.tag.endswith("/stop"):
            assert isinstance(m.value, bool)
    assert sum(m.tag.endswith("/gradient") for m in to_host) == ITERATIONS
    # So no float, no array and no small integer (a label, a residual) ever reaches the host
    # after the setup.
    for m in to_host:
        if m.tag != "hetero_lr/setup":
            for v in leaves(m.value):
                assert isinstance(v, bool) or (isinstance(v, int) and (v == -14 or v > 2**100))

    # Everything the guest received: ciphertexts under the host's key, and partial logits.
    to_guest = hub.received_by(GUEST)
    assert {re.sub(r"/\d+", "/*", m.tag) for m in to_guest} == {
        "hetero_lr/host_info",
        "hetero_lr/host_key",
        "hetero_lr/*/*/u",
        "hetero_lr/final/u",
    }
    host_weights = json.loads((tmp_path / "h" / "model").read_text())["weights"]
    for m in to_guest:
        for v in leaves(m.value):
            if isinstance(v, np.ndarray):
                assert v.shape == (ROWS,)  # partial logits only
                for column in x_host.T:
                    assert not np.allclose(v, column, atol=1e-3)
                assert not np.allclose(v[: len(host_weights)], host_weights)
        if m.tag == "hetero_lr/host_key":
            assert set(m.value) == {"public_key_n", "per_row", "features"}
            assert m.value["features"]["exponent"] == -6
            cts = m.value["features"]["ciphertexts"]
            assert len(cts) == ROWS * per_row and all(c.bit_length() > 1900 for c in cts)
        if m.tag == "hetero_lr/host_info":
            assert set(m.value) == {"samples", "features", "ids_digest"}
    # The guest never holds a key it could decrypt [[X_h]] with: it only ever got n, and no
    # decrypted value travels towards it (it sends nothing back to be decrypted for it).
    assert not any(m.src == HOST and "gradient" in m.tag for m in to_guest)
    assert len(ref.losses) == ITERATIONS

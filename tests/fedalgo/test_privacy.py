"""What each party of hetero_lr actually receives, recorded on the wire.

The host must only ever get ciphertext-sized integers, masked gradients and control values (never
labels or residuals); the guest must never get a host feature column, weight or exact gradient.
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
from fedalgo.logistic import sigmoid

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


def test_hetero_lr_wire_privacy(tmp_path: Path, shared_data: Path, subset) -> None:
    guest_csv = subset(shared_data / "breast_hetero_guest.csv", ROWS)
    host_csv = subset(shared_data / "breast_hetero_host.csv", ROWS)
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
        "hetero_lr/*/*/residual",
        "hetero_lr/*/*/gradient",
        "hetero_lr/*/stop",
    }
    bound_bits = int(np.abs(np.rint(x_host * 2**24)).sum(axis=0).max() * 2**32).bit_length()
    setups = [m.value for m in to_host if m.tag == "hetero_lr/setup"]
    assert len(setups) == 1 and setups[0]["public_key_n"].bit_length() == 1024
    assert set(setups[0]) == {
        "public_key_n",
        "learning_rate",
        "max_iter",
        "alpha",
        "batch_size",
        "decay",
        "tol",
        "seed",
        "fit_intercept",
    }
    for m in to_host:
        if m.tag.endswith("/residual"):
            assert m.value["exponent"] == -8
            assert all(isinstance(c, int) and c.bit_length() > 1900 for c in m.value["ciphertexts"])
        elif m.tag.endswith("/gradient"):
            # Masked: each value carries ~80 random bits above the largest possible gradient.
            assert all(isinstance(v, int) and v.bit_length() > bound_bits + 40 for v in m.value)
        elif m.tag.endswith("/stop"):
            assert isinstance(m.value, bool)
    assert sum(m.tag.endswith("/residual") for m in to_host) == ITERATIONS
    # So no float, no array and no small integer (a label, a residual) ever reaches the host
    # after the setup.
    for m in to_host:
        if m.tag != "hetero_lr/setup":
            for v in leaves(m.value):
                assert isinstance(v, bool) or (isinstance(v, int) and (v == -8 or v > 2**100))

    # Everything the guest received.
    to_guest = hub.received_by(GUEST)
    assert {re.sub(r"/\d+", "/*", m.tag) for m in to_guest} == {
        "hetero_lr/host_info",
        "hetero_lr/*/*/u",
        "hetero_lr/*/*/masked_gradient",
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
        if m.tag.endswith("masked_gradient"):
            assert len(m.value["ciphertexts"]) == x_host.shape[1]
            assert all(c.bit_length() > 1900 for c in m.value["ciphertexts"])
        if m.tag == "hetero_lr/host_info":
            assert set(m.value) == {"samples", "features", "ids_digest"}

    # What the guest learned of the host's gradient (the decrypted values it sent back) is
    # unrelated to the true gradient X_h^T d at the guest's precision.
    u = x_guest @ np.zeros(x_guest.shape[1])
    true_first = x_host.T @ (sigmoid(u) - y)
    first_back = next(m for m in to_host if m.tag == "hetero_lr/0/0/gradient").value
    learned = np.array([v / 16**14 for v in first_back])
    assert np.all(np.abs(learned - true_first) > 1e3)
    assert len(ref.losses) == ITERATIONS

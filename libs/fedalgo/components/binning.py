"""``binning``: quantile or equal-width bins of each party's own columns, and their WOE/IV.

Each party bins its own feature columns locally (``method``: ``quantile``, the default, or
``equal-width``; ``bins``: at most this many bins per column, default 10). The guest computes
the weight of evidence and information value of its own bins from its labels. For the hosts'
columns (hetero WOE/IV, when ``iv`` is true, the default):

1. the guest generates a Paillier key pair (``key-bits``, 2048; 1024 with a warning) and sends
   each host the public key and [[y_i]] for every row (0/1 labels, one ciphertext each);
2. each host multiplies, per bin of each of its columns, the ciphertexts of the rows in that bin
   (the homomorphic event count), folds the bin counts a few dozen to a ciphertext, re-randomises
   them with fresh standard Paillier randomness and sends them with the number of rows per bin;
3. the guest decrypts the event counts, computes each host column's WOE and IV, and sends each
   host the IV of its own columns. Both sides write their model.

Arguments: :class:`BinningParams`; ``method`` and ``bins`` are each party's own, ``iv`` and
``key-bits`` the guest's.

Threat model (semi-honest parties, each sees exactly what it is sent):

* A host sees the guest's public key and one ciphertext per row (semantically secure: it learns
  no label), then one number per column of its own: the IV. It does not see the per-bin WOE or
  event counts; the IV alone is an aggregate of the label distribution over its own bins.
* The guest sees, per host column, the number of rows and of events in each bin, in bin order
  (as in FATE's hetero binning): the label distribution over the host's bins. It never sees a
  host's feature names, values or split points, nor which row is in which bin (the sums are
  re-randomised, so their randomness does not reveal which of its ciphertexts were multiplied).
* Not covered: a malicious guest could encrypt chosen values instead of labels and learn, from
  one host column, how many of the chosen rows fall in each bin. Run it between parties who follow
  the protocol.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fedalgo import paillier
from fedalgo.alignment import check_hosts, host_feature_name, host_info
from fedalgo.bin_edges import Binning, fit_binning, woe_iv
from fedalgo.components.registry import component
from fedalgo.context import Context
from fedalgo.errors import DataError, ProtocolError
from fedalgo.histogram import bin_sums, compress, decompress
from fedalgo.tables import Dataset
from fedcore import floors
from fedcore.params import Params

TAG = "binning"


class BinningParams(Params):
    """``binning``'s arguments (``method``, ``bins``: each party's own; the rest: the guest's)."""

    method: Literal["quantile", "equal-width"] = Field(
        "quantile", description="how this party places its bin edges"
    )
    bins: int = Field(10, ge=2, le=1024, description="at most this many bins per column")
    iv: bool = Field(True, description="compute WOE/IV (the hosts' under encryption)")
    key_bits: paillier.KeyBits = Field(
        paillier.DEFAULT_KEY_BITS, description="the guest's Paillier key size (1024 warns)"
    )


def _feature_model(name: str, splits: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    return {"name": name, "splits": splits.tolist(), "counts": counts.astype(int).tolist()}


@component(
    "binning", roles=("guest", "host"), inputs=("data",), outputs=("model",), params=BinningParams
)
def binning(ctx: Context) -> None:
    """Bin each party's columns; the guest computes every column's WOE/IV (hosts' encrypted)."""
    params = ctx.params(BinningParams)
    floors.check_bins(ctx.floors, params.bins)  # this party's floor: a bin per row orders its rows
    if ctx.role == "guest":
        _guest(ctx, params)
    else:
        _host(ctx, params.method, params.bins)


def _counts(binning_: Binning) -> list[np.ndarray]:
    return [
        np.bincount(binning_.bins[:, j], minlength=k) for j, k in enumerate(binning_.bin_counts)
    ]


def _guest(ctx: Context, params: BinningParams) -> None:
    method, bins, with_iv = params.method, params.bins, params.iv
    if with_iv:
        floors.check_key_bits(ctx.floors, params.key_bits)  # the key that hides this party's labels
    data = ctx.read_dataset("data", with_label=True)
    if data.n_samples == 0:
        raise DataError("the guest's data has no rows")
    hosts = check_hosts(ctx, f"{TAG}/host_info", data) if ctx.party_ids("host") else {}
    y = data.y
    assert y is not None  # read_dataset(with_label=True)
    total_events = int(y.sum())
    if with_iv and total_events in (0, data.n_samples):
        raise DataError("WOE/IV needs both classes in the labels (all rows are one class)")

    fitted = fit_binning(data.x, bins, method, ctx.computing)
    features = []
    for j, name in enumerate(data.features):
        counts = np.bincount(fitted.bins[:, j], minlength=fitted.bin_counts[j])
        entry = _feature_model(name, fitted.splits[j], counts)
        if with_iv:
            events = np.bincount(fitted.bins[:, j], weights=y, minlength=fitted.bin_counts[j])
            stats = woe_iv(events, counts, total_events, data.n_samples)
            entry.update(events=events.astype(int).tolist(), woe=stats.woe, iv=stats.iv)
        features.append(entry)

    host_models: dict[str, list[dict[str, Any]]] = {}
    if hosts:
        ctx.send("host", f"{TAG}/setup", {"iv": with_iv})
    if hosts and with_iv:
        public_key, private_key = paillier.generate_keypair(params.key_bits)
        encryptor = paillier.Encryptor(public_key, private_key=private_key)
        labels = encryptor.encrypt_ints(y.tolist(), 0, pool=ctx.computing)
        ctx.send(
            "host", f"{TAG}/labels", {"public_key_n": public_key.n, "labels": labels.to_wire()}
        )
        for host, reply in ctx.recv_all("host", f"{TAG}/events").items():
            host_models[host] = _host_iv(
                private_key, reply, hosts[host], host, data.n_samples, total_events
            )
            ctx.send(host, f"{TAG}/iv", [f["iv"] for f in host_models[host]])

    model = {
        "component": "binning",
        "role": "guest",
        "method": method,
        "bins": bins,
        "features": features,
        "hosts": host_models,
    }
    ctx.output("model").write_text(json.dumps(model, indent=2))
    for f in features:
        if "iv" in f:
            ctx.metric(f"iv/{f['name']}", f["iv"])
    if with_iv:
        ivs = {f["name"]: f["iv"] for f in features}
        ivs.update({f["name"]: f["iv"] for fs in host_models.values() for f in fs})
        ctx.metric("iv", ivs)


def _slot_bits(rows: int) -> int:
    return rows.bit_length() + 2


def _host_iv(
    private_key: paillier.PrivateKey,
    reply: Any,
    features: int,
    host: str,
    rows: int,
    total_events: int,
) -> list[dict[str, Any]]:
    """Decrypt one host's per-bin event counts; WOE/IV of each of its columns."""
    if not isinstance(reply, dict) or set(reply) != {"counts", "events", "per_ciphertext"}:
        raise ProtocolError(
            f"host {host}'s event counts must be {{counts, events, per_ciphertext}}"
        )
    counts = reply["counts"]
    per_ct = reply["per_ciphertext"]
    slot_bits = _slot_bits(rows)
    limit = paillier.slots_per_plaintext(private_key.public_key.max_int, slot_bits)
    if not isinstance(per_ct, int) or not 1 <= per_ct <= limit:
        raise ProtocolError(f"host {host} sent a bad packing ({per_ct!r} per ciphertext)")
    if not isinstance(counts, list) or len(counts) != features:
        raise ProtocolError(f"host {host} must send bin counts for {features} columns")
    arrays = []
    for c in counts:
        arr = np.asarray(c)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or (arr < 0).any() or arr.sum() != rows:
            raise ProtocolError(f"host {host} sent bad bin counts")
        arrays.append(arr)
    total_bins = sum(len(a) for a in arrays)
    vector = paillier.EncryptedVector.from_wire(
        private_key.public_key, reply["events"], expected_len=-(-total_bins // per_ct)
    )
    try:
        plain = paillier.decrypt_ints(private_key, vector)
    except OverflowError:
        raise ProtocolError(f"host {host}'s event counts are out of range") from None
    events = np.array(decompress(plain, slot_bits, per_ct, total_bins), dtype=np.float64)
    out = []
    start = 0
    for j, arr in enumerate(arrays):
        ev = events[start : start + len(arr)]
        start += len(arr)
        if (ev < 0).any() or (ev > arr).any():
            raise ProtocolError(f"host {host} sent impossible event counts")
        stats = woe_iv(ev, arr, total_events, rows)
        out.append({"name": host_feature_name(host, j), "woe": stats.woe, "iv": stats.iv})
    return out


def _host(ctx: Context, method: str, bins: int) -> None:
    data: Dataset = ctx.read_dataset("data", with_label=False)
    ctx.send("guest", f"{TAG}/host_info", host_info(data))
    if not data.features:
        raise DataError("the host's data has no feature columns (only 'id')")
    fitted = fit_binning(data.x, bins, method, ctx.computing)
    counts = _counts(fitted)
    setup = ctx.recv("guest", f"{TAG}/setup")
    if not isinstance(setup, dict) or not isinstance(setup.get("iv"), bool):
        raise ProtocolError("the binning setup must be {iv: bool}")
    ivs: list[float] | None = None
    if setup["iv"]:
        ivs = _host_events(ctx, fitted, counts, data.n_samples)
    features = []
    for j, name in enumerate(data.features):
        entry = _feature_model(name, fitted.splits[j], counts[j])
        if ivs is not None:
            entry["iv"] = ivs[j]
        features.append(entry)
    model = {
        "component": "binning",
        "role": "host",
        "method": method,
        "bins": bins,
        "features": features,
    }
    ctx.output("model").write_text(json.dumps(model, indent=2))


def _host_events(ctx: Context, fitted: Binning, counts: list[np.ndarray], rows: int) -> list[float]:
    message = ctx.recv("guest", f"{TAG}/labels")
    if not isinstance(message, dict) or set(message) != {"public_key_n", "labels"}:
        raise ProtocolError("the encrypted labels must be {public_key_n, labels}")
    try:
        public_key = paillier.PublicKey(message["public_key_n"])
    except ValueError as exc:
        raise ProtocolError(f"the guest's public key: {exc}") from None
    labels = paillier.EncryptedVector.from_wire(public_key, message["labels"], expected_len=rows)
    total_bins = sum(fitted.bin_counts)
    sums = bin_sums(
        labels.ciphertexts, fitted.flat(), total_bins, public_key.nsquare, ctx.computing
    )
    slot_bits = _slot_bits(rows)
    per_ct = paillier.slots_per_plaintext(public_key.max_int, slot_bits)
    folded = compress(sums, slot_bits, per_ct, public_key.nsquare)
    # Standard randomness: the guest holds the key, and DJN's short exponents hide nothing from
    # it; without it the product's randomness would show which rows were multiplied.
    rerandomiser = paillier.Encryptor(public_key, randomness="standard")
    events = rerandomiser.rerandomise(paillier.EncryptedVector(public_key, folded, 0))
    ctx.send(
        "guest",
        f"{TAG}/events",
        {
            "counts": [c.astype(np.int64) for c in counts],
            "events": events.to_wire(),
            "per_ciphertext": per_ct,
        },
    )
    ivs = ctx.recv("guest", f"{TAG}/iv")
    if (
        not isinstance(ivs, list)
        or len(ivs) != len(counts)
        or not all(isinstance(v, float) for v in ivs)
    ):
        raise ProtocolError("the guest must send one IV per column")
    return [float(v) for v in ivs]

"""``feature_selection``: keep the columns with the highest IV or model importance, per party.

The guest scores every column from its own ``model`` input: a ``binning`` model (``iv-*``
methods: the IV of its columns and of each host's, which it computed) or a
``hetero_secureboost`` model (``importance-*`` methods: the importance the model was trained to
report, split counts or gain; a column never split on scores 0). ``method`` is one of
``iv-threshold``, ``iv-top-k``, ``importance-threshold``, ``importance-top-k``; ``threshold``
(0.02) keeps columns scoring at least that much, ``k`` (10) keeps the k best over all parties.

The guest tells each host which of its own columns to keep (by index); every party then writes
its ``data`` with only the kept columns (``id`` and, at the guest, ``y`` stay) and a ``model``
listing what it kept and dropped. Hosts do not read a ``model`` input.

Threat model (semi-honest parties): a host sees which of its own columns are kept, and nothing
else (not the scores, not the guest's columns). The guest sees each host's column count (it
already knows it from the model it scores with). No feature value crosses.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fedalgo.alignment import check_hosts, host_feature_name, host_info
from fedalgo.components.registry import component
from fedalgo.context import Context
from fedalgo.errors import ArgumentError, DataError, ProtocolError
from fedalgo.tables import ID_COLUMN, LABEL_COLUMN, read_table, write_table
from fedcore.params import Params

TAG = "feature_selection"


class FeatureSelectionParams(Params):
    """``feature_selection``'s arguments (the guest's)."""

    method: Literal["iv-threshold", "iv-top-k", "importance-threshold", "importance-top-k"] = Field(
        "iv-threshold",
        description="rank by binning IV or model importance; keep by threshold or top k",
    )
    threshold: float = Field(0.02, description="*-threshold: keep columns scoring at least this")
    k: int = Field(10, ge=1, description="*-top-k: keep the k best columns over all parties")


@component(
    "feature_selection",
    roles=("guest", "host"),
    inputs=("data", "model"),
    outputs=("data", "model"),
    params=FeatureSelectionParams,
)
def feature_selection(ctx: Context) -> None:
    """Keep each party's best columns by IV or model importance, as decided by the guest."""
    if ctx.role == "guest":
        _guest(ctx)
    else:
        _host(ctx)


def _scores(model: dict[str, Any], method: str) -> dict[str, float]:
    """Every column's score by name (the hosts' under their anonymous names)."""
    kind = model.get("component")
    if method.startswith("iv-"):
        if kind != "binning" or model.get("role") != "guest":
            raise ArgumentError(f"method {method!r} needs the guest's binning model, got {kind!r}")
        scores = {f["name"]: f.get("iv") for f in model["features"]}
        for features in model.get("hosts", {}).values():
            scores.update({f["name"]: f.get("iv") for f in features})
        if any(v is None for v in scores.values()):
            raise ArgumentError("the binning model has no IV (it was run with iv: false)")
        return {k: float(v) for k, v in scores.items()}
    if kind != "hetero_secureboost" or model.get("role") != "guest":
        raise ArgumentError(
            f"method {method!r} needs the guest's hetero_secureboost model, got {kind!r}"
        )
    kind_of_importance = model["params"]["importance_type"]
    return {k: float(v) for k, v in model["feature_importance"][kind_of_importance].items()}


def select(
    scores: dict[str, float], names: list[str], method: str, *, threshold: float, k: int
) -> set[str]:
    """The names to keep among ``names`` (a name without a score scores 0)."""
    values = np.array([scores.get(n, 0.0) for n in names])
    if method.endswith("threshold"):
        return {n for n, v in zip(names, values.tolist(), strict=True) if v >= threshold}
    # Stable: ties keep the earlier column (guest first, then hosts in order).
    order = np.argsort(-values, kind="stable")[:k]
    return {names[i] for i in order.tolist()}


def _filter(ctx: Context, keep: list[int], features: list[str]) -> None:
    path = ctx.input("data")
    table = read_table(path)
    kept_names = [features[i] for i in keep]
    columns = [h for h in table.header if h in (ID_COLUMN, LABEL_COLUMN) or h in kept_names]
    index = [table.header.index(h) for h in columns]
    write_table(ctx.output("data"), columns, [[row[i] for i in index] for row in table.rows])
    model = {
        "component": "feature_selection",
        "role": ctx.role,
        "kept": kept_names,
        "dropped": [f for f in features if f not in kept_names],
    }
    ctx.output("model").write_text(json.dumps(model, indent=2))
    if not kept_names:
        ctx.logger.warning("feature selection dropped every column of this party")


def _guest(ctx: Context) -> None:
    params = ctx.params(FeatureSelectionParams)
    method, threshold, k = params.method, params.threshold, params.k
    try:
        model = json.loads(ctx.input("model").read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"the model input is not JSON: {exc}") from None
    scores = _scores(model, method)
    data = ctx.read_dataset("data", with_label=True)
    hosts = check_hosts(ctx, f"{TAG}/host_info", data) if ctx.party_ids("host") else {}
    names = list(data.features)
    for host, count in hosts.items():
        names += [host_feature_name(host, j) for j in range(count)]
    unknown = [n for n in names if n not in scores and method.startswith("iv-")]
    if unknown:
        raise DataError(f"the binning model has no IV for columns {unknown[:5]}")
    kept = select(scores, names, method, threshold=threshold, k=k)
    for host, count in hosts.items():
        ctx.send(
            host, f"{TAG}/keep", [j for j in range(count) if host_feature_name(host, j) in kept]
        )
    _filter(ctx, [j for j, f in enumerate(data.features) if f in kept], data.features)
    ctx.metric("selected", sorted(kept))


def _host(ctx: Context) -> None:
    data = ctx.read_dataset("data", with_label=False)
    ctx.send("guest", f"{TAG}/host_info", host_info(data))
    if not data.features:
        raise DataError("the host's data has no feature columns (only 'id')")
    keep = ctx.recv("guest", f"{TAG}/keep")
    if (
        not isinstance(keep, list)
        or not all(isinstance(j, int) and 0 <= j < len(data.features) for j in keep)
        or len(set(keep)) != len(keep)
    ):
        raise ProtocolError("the guest must send distinct column indices to keep")
    _filter(ctx, sorted(keep), data.features)

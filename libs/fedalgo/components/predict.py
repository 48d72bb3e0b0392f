"""``predict``: score new aligned rows with a model every party trained jointly.

Inputs: ``data`` (the party's new rows, aligned with the others' by ``intersect``; the guest's
may lack the label ``y``) and ``model`` (this party's own model output of a ``hetero_lr`` or
``hetero_secureboost`` step). Output: ``predictions``, at the guest ``id, [y,] score`` (the
probability of class 1), at a host ``id`` only. Columns are matched by name, so the new data may
hold more columns than the model uses (but not fewer).

* ``hetero_lr``: each host sends X_h w_h; the guest adds its own X_g w_g + b and applies the
  sigmoid.
* ``hetero_secureboost``: each host evaluates every one of its split nodes on every row
  (``x <= threshold``, by split id) and sends one boolean per row and split; the guest walks the
  trees, using its own thresholds and those booleans.

Threat model (semi-honest): for ``hetero_lr`` the guest sees each host's partial logits X_h w_h
(as at the end of training); for ``hetero_secureboost`` it sees, for each host split, which rows
would go left (a little more than training shows: the side of rows that never reach that node).
The guest never sees host feature values, weights or thresholds. A host receives nothing but the
model kind, and learns no score or label.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fedalgo.alignment import check_hosts, host_info
from fedalgo.components.registry import component
from fedalgo.context import Context
from fedalgo.errors import DataError, ProtocolError
from fedalgo.logistic import linear, sigmoid
from fedalgo.tables import (
    ID_COLUMN,
    LABEL_COLUMN,
    Dataset,
    dataset_of,
    format_floats,
    write_table,
)
from fedalgo.tree import Node, Tree, leaf_weights

TAG = "predict"
KINDS = ("hetero_lr", "hetero_secureboost")


@component("predict", roles=("guest", "host"), inputs=("data", "model"), outputs=("predictions",))
def predict(ctx: Context) -> None:
    """Joint prediction with a trained hetero_lr or hetero_secureboost model."""
    model = _load_model(ctx)
    table = ctx.read_table("data")
    has_label = LABEL_COLUMN in table.header
    with_label = ctx.role == "guest" and has_label
    data = dataset_of(table, ctx.input_location("data"), with_label=with_label)
    x = _columns(data, model["features"])
    if ctx.role == "guest":
        _guest(ctx, model, data, x)
    else:
        _host(ctx, model, data, x)


def _load_model(ctx: Context) -> dict[str, Any]:
    try:
        model = json.loads(ctx.input("model").read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"the model input is not JSON: {exc}") from None
    if not isinstance(model, dict) or model.get("component") not in KINDS:
        raise DataError(f"predict needs a model from one of {list(KINDS)}")
    if model.get("role") != ctx.role:
        raise DataError(f"this is a {model.get('role')}'s model, but this party is a {ctx.role}")
    return model


def _columns(data: Dataset, names: list[str]) -> np.ndarray:
    missing = [n for n in names if n not in data.features]
    if missing:
        raise DataError(f"the data lacks the model's columns {missing[:5]}")
    return data.x[:, [data.features.index(n) for n in names]]


def _guest(ctx: Context, model: dict[str, Any], data: Dataset, x: np.ndarray) -> None:
    kind = model["component"]
    check_hosts(ctx, f"{TAG}/host_info", data, need_features=False)
    ctx.send("host", f"{TAG}/kind", kind)
    replies = ctx.recv_all("host", f"{TAG}/{kind}")
    if kind == "hetero_lr":
        weights = np.asarray(model["weights"], dtype=np.float64)
        u = linear(x, weights, ctx.computing) + float(model["intercept"])
        for host, u_h in replies.items():
            if not isinstance(u_h, np.ndarray) or u_h.shape != (data.n_samples,):
                raise ProtocolError(f"host {host} must send {data.n_samples} partial logits")
            u = u + u_h
    else:
        u = _boost_scores(model, x, replies, data.n_samples)
    score = format_floats(sigmoid(u)[:, None])
    if data.y is not None:
        header = [ID_COLUMN, LABEL_COLUMN, "score"]
        rows = [[i, str(int(t)), s[0]] for i, t, s in zip(data.ids, data.y, score, strict=True)]
    else:
        header = [ID_COLUMN, "score"]
        rows = [[i, s[0]] for i, s in zip(data.ids, score, strict=True)]
    write_table(ctx.output("predictions"), header, rows)
    ctx.logger.info("scored %d rows with a %s model", data.n_samples, kind)


def _boost_scores(
    model: dict[str, Any], x: np.ndarray, replies: dict[str, Any], rows: int
) -> np.ndarray:
    for host, masks in replies.items():
        if not isinstance(masks, dict) or not all(
            isinstance(m, np.ndarray) and m.dtype == np.bool_ and m.shape == (rows,)
            for m in masks.values()
        ):
            raise ProtocolError(f"host {host} must send {rows} booleans per split")

    def goes_left(node: Node, members: np.ndarray) -> np.ndarray:
        if node.split_id:
            mask = replies.get(node.party, {}).get(node.split_id)
            if mask is None:
                raise ProtocolError(f"host {node.party} did not evaluate split {node.split_id}")
            return np.asarray(mask[members])
        return np.asarray(x[members, node.feature_index] <= node.threshold)

    u = np.full(rows, float(model["init_score"]))
    for tree in model["trees"]:
        u += leaf_weights(Tree.from_json(tree), rows, goes_left)
    return u


def _host(ctx: Context, model: dict[str, Any], data: Dataset, x: np.ndarray) -> None:
    ctx.send("guest", f"{TAG}/host_info", host_info(data))
    kind = ctx.recv("guest", f"{TAG}/kind")
    if kind != model["component"]:
        raise DataError(
            f"the guest predicts with a {kind!r} model, this host has {model['component']!r}"
        )
    reply: Any
    if kind == "hetero_lr":
        reply = linear(x, np.asarray(model["weights"], dtype=np.float64), ctx.computing)
    else:
        index = {name: j for j, name in enumerate(model["features"])}
        reply = {
            split_id: x[:, index[s["feature"]]] <= float(s["threshold"])
            for split_id, s in model["splits"].items()
        }
    ctx.send("guest", f"{TAG}/{kind}", reply)
    write_table(ctx.output("predictions"), [ID_COLUMN], [[i] for i in data.ids])

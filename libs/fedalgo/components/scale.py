"""``scale``: standardise or min-max scale a party's own feature columns, locally.

Arguments: ``method``, ``standard`` (default: zero mean, unit variance) or ``min-max`` (to [0, 1]).

Threat model: nothing leaves the party; no messages are exchanged. The fitted parameters are
written to the party's own ``model`` output (JSON) so the same transform can be applied later
with :func:`apply_scaling`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fedalgo.components.registry import component
from fedalgo.computing import Computing
from fedalgo.context import Context
from fedalgo.errors import DataError
from fedalgo.tables import (
    ID_COLUMN,
    LABEL_COLUMN,
    format_floats,
    parse_numeric,
    write_table,
)
from fedcore.params import Params

METHODS = ("standard", "min-max")


def fit_scaling(
    x: np.ndarray, method: str, computing: Computing | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)`` such that ``(x - offset) / scale`` is the scaled data.

    Constant columns get scale 1 (as scikit-learn does) so they map to 0 rather than NaN. Each
    column's statistics are computed on their own (by ``computing``'s workers, a share of the
    columns each, for large data), so every engine gives the same bits.
    """
    if x.shape[0] == 0:
        raise DataError("cannot fit scaling on an empty data set")
    if method not in METHODS:
        raise ValueError(f"unknown scaling method {method!r}")
    columns = np.ascontiguousarray(x.T)
    if computing is not None and computing.splits(x.size):
        parts = computing.map_chunks(_column_stats, [columns], method)
    else:
        parts = [_column_stats(columns, method)]
    offset = np.concatenate([p[0] for p in parts])
    scale = np.concatenate([p[1] for p in parts])
    scale = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
    return offset, scale


def _column_stats(columns: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Offset and scale of each row of ``columns`` (a column of the data)."""
    if method == "standard":
        return columns.mean(axis=1), columns.std(axis=1)
    low = columns.min(axis=1)
    return low, columns.max(axis=1) - low


def apply_scaling(model: dict[str, Any], columns: list[str], x: np.ndarray) -> np.ndarray:
    """Apply a saved ``scale`` model to ``x`` whose columns are named ``columns``."""
    params = dict(
        zip(model["columns"], zip(model["offset"], model["scale"], strict=True), strict=True)
    )
    missing = [c for c in columns if c not in params]
    if missing:
        raise DataError(f"the scaling model has no parameters for columns {missing}")
    offset = np.array([params[c][0] for c in columns])
    scale = np.array([params[c][1] for c in columns])
    return (x - offset) / scale


class ScaleParams(Params):
    """``scale``'s arguments (each party's own)."""

    method: Literal["standard", "min-max"] = Field(
        "standard", description="zero mean and unit variance, or min-max to [0, 1]"
    )


@component(
    "scale",
    roles=("guest", "host"),
    inputs=("data",),
    outputs=("data", "model"),
    params=ScaleParams,
)
def scale(ctx: Context) -> None:
    """Scale this party's feature columns (not ``id``, not the label ``y``); no communication."""
    method = ctx.params(ScaleParams).method
    path = ctx.input_location("data")
    table = ctx.read_table("data")
    table.column_index(ID_COLUMN, path)
    cols = [i for i, h in enumerate(table.header) if h not in (ID_COLUMN, LABEL_COLUMN)]
    names = [table.header[i] for i in cols]
    x = parse_numeric(table, cols, path)
    offset, factor = fit_scaling(x, method, ctx.computing)
    scaled = format_floats((x - offset) / factor)

    rows = [list(r) for r in table.rows]
    for row, new in zip(rows, scaled, strict=True):
        for c, value in zip(cols, new, strict=True):
            row[c] = value
    write_table(ctx.output("data"), table.header, rows)
    model = {
        "component": "scale",
        "method": method,
        "columns": names,
        "offset": offset.tolist(),
        "scale": factor.tolist(),
    }
    ctx.output("model").write_text(json.dumps(model, indent=2))
    ctx.logger.info("%s scaling of %d columns over %d rows", method, len(names), len(rows))

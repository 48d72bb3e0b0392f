"""CSV in and out: raw tables (kept as text, for row selection) and numeric data sets.

Files have a header row and an ``id`` column; the guest's also has the label ``y`` (0/1). Only the
standard library and numpy are used, so every party can read what another engineer wrote by hand.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedalgo.errors import DataError

ID_COLUMN = "id"
LABEL_COLUMN = "y"


@dataclass(frozen=True)
class Table:
    """A CSV file as text: its header and rows, unparsed."""

    header: list[str]
    rows: list[list[str]]

    def column_index(self, name: str, path: Path | str = "") -> int:
        try:
            return self.header.index(name)
        except ValueError:
            where = f" in {path}" if path else ""
            raise DataError(f"no {name!r} column{where} (columns: {self.header})") from None


@dataclass(frozen=True)
class Dataset:
    """Numeric view of a party's data: ids, its feature matrix and (at the guest) the labels."""

    ids: list[str]
    features: list[str]
    x: np.ndarray
    y: np.ndarray | None = None
    #: whether the table had a label column (read or not: a host warns that it ignores it)
    has_label_column: bool = False

    @property
    def n_samples(self) -> int:
        return len(self.ids)


def read_table(path: Path | str) -> Table:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path} is empty (a header row is required)") from None
        rows = [row for row in reader if row]
    for lineno, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
    if len(set(header)) != len(header):
        raise DataError(f"{path}: duplicate column names in {header}")
    return Table(header, rows)


def write_table(path: Path | str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def parse_numeric(table: Table, columns: Sequence[int], path: Path | str) -> np.ndarray:
    """The given columns as a float matrix; a clear error names the first bad cell."""
    text = np.array([[row[c] for c in columns] for row in table.rows], dtype=str)
    text = text.reshape(len(table.rows), len(columns))
    try:
        values = text.astype(np.float64)
    except ValueError:
        for r, row in enumerate(text):
            for c, cell in enumerate(row):
                try:
                    float(cell)
                except ValueError:
                    col = table.header[columns[c]]
                    raise DataError(
                        f"{path}:{r + 2}: column {col!r} has non-numeric value {str(cell)!r}"
                    ) from None
        raise
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        raise DataError(f"{path}:{r + 2}: column {table.header[columns[c]]!r} is not finite")
    return values


def parse_labels(table: Table, path: Path | str, label: str = LABEL_COLUMN) -> np.ndarray:
    """The label column as int 0/1; anything else is a :class:`DataError`."""
    idx = table.column_index(label, path)
    values = parse_numeric(table, [idx], path)[:, 0]
    bad = sorted({float(v) for v in values if v not in (0.0, 1.0)})
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise DataError(f"{path}: labels in {label!r} must be 0 or 1, found {shown}")
    return values.astype(np.int64)


def read_dataset(
    path: Path | str, *, with_label: bool, label: str = LABEL_COLUMN, id_column: str = ID_COLUMN
) -> Dataset:
    """A party's numeric data: every column but the id and the label is a feature."""
    return dataset_of(
        read_table(path), path, with_label=with_label, label=label, id_column=id_column
    )


def dataset_of(
    table: Table,
    path: Path | str,
    *,
    with_label: bool,
    label: str = LABEL_COLUMN,
    id_column: str = ID_COLUMN,
) -> Dataset:
    """:func:`read_dataset` of a table already read (``path`` names it in errors)."""
    id_idx = table.column_index(id_column, path)
    if with_label and label not in table.header:
        raise DataError(f"{path}: the guest's data needs a label column {label!r}")
    excluded = {id_column, label}
    feat_idx = [i for i, h in enumerate(table.header) if h not in excluded]
    return Dataset(
        ids=[row[id_idx] for row in table.rows],
        features=[table.header[i] for i in feat_idx],
        x=parse_numeric(table, feat_idx, path),
        y=parse_labels(table, path, label) if with_label else None,
        has_label_column=label in table.header,
    )


def format_floats(values: np.ndarray) -> list[list[str]]:
    """Shortest round-trip text for each float (``repr``), row by row."""
    return [[repr(v) for v in row] for row in np.asarray(values, dtype=np.float64).tolist()]

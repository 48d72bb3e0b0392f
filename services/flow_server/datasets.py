"""Registered data tables: stream an uploaded CSV to disk, detect its schema, count its rows.

Nothing here holds a whole file in memory: an upload is written chunk by chunk while its lines are
counted, and the schema is read from a bounded sample at the head of the file (the first
``SAMPLE_ROWS`` rows, at most ``SAMPLE_BYTES``). Rows are counted as lines after the header, so a
quoted field holding a newline is not supported (fedalgo's tables do not allow one either).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from fedcore.envelope import new_id
from flow_server import schemas
from flow_server.errors import ApiError, NotFound
from flow_server.models import DataTable

CHUNK_BYTES = 1024 * 1024
SAMPLE_ROWS = 1000
SAMPLE_BYTES = 4 * 1024 * 1024
PREVIEW_ROWS = 10
ID_NAMES = ("id", "ID", "Id")
LABEL_NAMES = ("y", "label")
_BINARY = frozenset({"0", "1", "0.0", "1.0"})


class SchemaError(ApiError):
    """The file is not a CSV table Tessera can use (no header, ragged rows, not UTF-8)."""

    def __init__(self, message: str) -> None:
        super().__init__(422, "bad_table", message, where="file")


@dataclass(frozen=True)
class Schema:
    header: list[str]
    id_column: str
    label_column: str | None
    columns: dict[str, str]  # name -> id / label / numeric / categorical
    preview: list[list[str]]


class LineCounter:
    """Counts the lines of a byte stream fed to it in chunks (a last line may lack its newline)."""

    def __init__(self) -> None:
        self.newlines = 0
        self.size = 0
        self._last = b"\n"

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self.newlines += chunk.count(b"\n")
            self.size += len(chunk)
            self._last = chunk[-1:]

    @property
    def lines(self) -> int:
        return self.newlines + (0 if self._last == b"\n" else 1)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def detect_schema(sample: Iterable[list[str]]) -> Schema:
    """The id column, the label column and each feature's type, from the first rows of a CSV."""
    rows = iter(sample)
    header = next(rows, None)
    if not header or not any(h.strip() for h in header):
        raise SchemaError("the file has no header row")
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise SchemaError(f"the header repeats column(s) {dupes}")
    body: list[list[str]] = []
    for lineno, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise SchemaError(f"line {lineno} has {len(row)} fields, the header has {len(header)}")
        body.append(row)
        if len(body) >= SAMPLE_ROWS:
            break
    id_column = next((h for h in header if h in ID_NAMES), header[0])
    values = {name: [r[i] for r in body if r[i] != ""] for i, name in enumerate(header)}
    label_column = next(
        (
            h
            for h in header
            if h in LABEL_NAMES and h != id_column and values[h] and set(values[h]) <= _BINARY
        ),
        None,
    )
    columns: dict[str, str] = {}
    for name in header:
        if name == id_column:
            columns[name] = "id"
        elif name == label_column:
            columns[name] = "label"
        else:
            numeric = all(_is_number(v) for v in values[name])
            columns[name] = "numeric" if numeric else "categorical"
    return Schema(header, id_column, label_column, columns, body[:PREVIEW_ROWS])


def read_sample(path: Path) -> Schema:
    """The schema of the CSV at ``path``, from at most ``SAMPLE_BYTES`` of its head."""
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    if len(head) == SAMPLE_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]  # whole lines only
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"the file is not UTF-8 text: {exc}") from None
    try:
        return detect_schema(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise SchemaError(f"the file is not a CSV table: {exc}") from None


def count_lines(path: Path) -> LineCounter:
    counter = LineCounter()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            counter.feed(chunk)
    return counter


# --- writing uploads ---------------------------------------------------------------------------


def data_dir(state_dir: Path) -> Path:
    path = state_dir / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def copy_file(src: IO[bytes], dest: Path) -> LineCounter:
    """Copy a (spooled) upload to ``dest`` chunk by chunk, counting its lines on the way."""
    counter = LineCounter()
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            counter.feed(chunk)
            out.write(chunk)
    return counter


async def write_stream(chunks: AsyncIterator[bytes], dest: Path) -> LineCounter:
    """Write a request body to ``dest`` as it arrives, in writes of about ``CHUNK_BYTES``."""
    counter = LineCounter()
    buffer = bytearray()
    out = await asyncio.to_thread(open, dest, "wb")
    try:
        async for chunk in chunks:
            counter.feed(chunk)
            buffer += chunk
            if len(buffer) >= CHUNK_BYTES:
                await asyncio.to_thread(out.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await asyncio.to_thread(out.write, bytes(buffer))
    finally:
        await asyncio.to_thread(out.close)
    return counter


@contextmanager
def removed_on_error(path: Path) -> Iterator[None]:
    """Remove an uploaded file if storing it fails (a refusal, a disconnect, a full disk)."""
    try:
        yield
    except BaseException:
        remove_quietly(path)
        raise


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- rows --------------------------------------------------------------------------------------


def create_table(
    session: Session,
    *,
    table_id: str,
    name: str,
    path: Path,
    source: str,
    schema: Schema,
    counter: LineCounter,
) -> DataTable:
    if session.scalar(select(DataTable.id).where(DataTable.name == name)) is not None:
        raise ApiError(
            409, "table_exists", f"a table named {name!r} exists already; pick another name", "name"
        )
    row = DataTable(
        id=table_id,
        name=name,
        path=str(path),
        source=source,
        size_bytes=counter.size,
        rows=max(counter.lines - 1, 0),
        id_column=schema.id_column,
        label_column=schema.label_column,
        columns=schema.columns,
        preview={"header": schema.header, "rows": schema.preview},
    )
    session.add(row)
    session.flush()  # fills the defaults (created_ms)
    return row


def new_table_id() -> str:
    return new_id()


def find_table(session: Session, ref: str) -> DataTable | None:
    """A table by id or by name."""
    return session.scalars(
        select(DataTable).where(or_(DataTable.id == ref, DataTable.name == ref))
    ).first()


def get_table(session: Session, table_id: str) -> DataTable:
    row = session.get(DataTable, table_id)
    if row is None:
        raise NotFound("table", table_id)
    return row


def list_tables(
    session: Session, *, source: str | None, limit: int, offset: int
) -> tuple[list[DataTable], int]:
    query = select(DataTable)
    count = select(func.count()).select_from(DataTable)
    if source is not None:
        query = query.where(DataTable.source == source)
        count = count.where(DataTable.source == source)
    rows = session.scalars(
        query.order_by(DataTable.created_ms.desc(), DataTable.id).limit(limit).offset(offset)
    )
    return list(rows), int(session.scalar(count) or 0)


def table_out(row: DataTable) -> schemas.TableOut:
    return schemas.TableOut(
        table_id=row.id,
        name=row.name,
        path=row.path,
        source=row.source,
        size_bytes=row.size_bytes,
        rows=row.rows,
        id_column=row.id_column,
        label_column=row.label_column,
        columns=dict(row.columns),
        created_ms=row.created_ms,
    )


def table_detail(row: DataTable) -> schemas.TableDetail:
    preview: dict[str, Any] = dict(row.preview)
    return schemas.TableDetail(
        **table_out(row).model_dump(),
        preview=schemas.Preview(
            header=list(preview.get("header", [])), rows=list(preview.get("rows", []))
        ),
    )

"""How every Tessera service logs: plain text by default, one JSON object per line with
``LOG_FORMAT=json``, each record carrying the party, the service and — where a message, job or
step is being handled — its ``job_id``, ``step`` and ``attempt``.

A consumer binds what it handles for as long as it handles it (``with bind(job_id=..., step=...)``);
asyncio tasks started meanwhile inherit the binding (context variables), so a step's own task keeps
its fields for its whole life.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from fedcore.envelope import Envelope

LogFormat = Literal["text", "json"]
FIELDS = ("job_id", "step", "attempt")

# never mutated: bind() sets a new mapping and resets it afterwards
_bound: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "tessera_log", default=MappingProxyType({})
)


@contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add ``fields`` (``job_id``, ``step``, ``attempt``; None leaves one out) to every record
    logged in this context."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def bind_envelope(env: Envelope) -> AbstractContextManager[None]:
    """:func:`bind` the job, step and attempt an envelope is about."""
    attempt = env.body.get("attempt")
    return bind(
        job_id=env.job_id,
        step=env.task,
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


class _Context(logging.Filter):
    """Puts the party, the service and the bound fields on each record."""

    def __init__(self, service: str, party: str) -> None:
        super().__init__()
        self._service = service
        self._party = party

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.party = self._party
        record.bound = _bound.get()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [job=… step=… attempt=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        bound: Mapping[str, object] = getattr(record, "bound", {})
        if not bound:
            return line
        tags = " ".join(f"{k.removesuffix('_id')}={bound[k]}" for k in FIELDS if k in bound)
        head, sep, rest = line.partition("\n")  # a traceback stays below the tagged line
        return f"{head} [{tags}]{sep}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, party, service, logger, message, the bound fields,
    and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "party": getattr(record, "party", None),
            "service": getattr(record, "service", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "bound", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup(service: str, party: str, *, fmt: LogFormat = "text", level: str = "info") -> None:
    """Configure the root logger of a service process (uvicorn's loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context(service, party))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, differently formatted line
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)

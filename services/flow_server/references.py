"""``table:<id or name>`` and ``model:<id>`` in a party's job args, resolved to local paths.

A party's own ``parties-args`` may name a registered table or model instead of a path; this party
resolves them when it creates (initiator) or accepts (other parties) the job, so the job's stored
args and every ``task.run`` carry plain paths. Only the party's own args are resolved: another
party's references are its own business, and the common args are shared by all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from flow_server import datasets
from flow_server.dsl import DslError
from flow_server.models import Model

TABLE = "table:"
MODEL = "model:"


def resolve_value(session: Session, value: Any, *, me: str, where: str) -> Any:
    if not isinstance(value, str):
        return value
    if value.startswith(TABLE):
        ref = value[len(TABLE) :].strip()
        table = datasets.find_table(session, ref)
        if table is None:
            raise DslError("table_not_found", f"party {me} has no registered table {ref!r}", where)
        return table.path
    if value.startswith(MODEL):
        ref = value[len(MODEL) :].strip()
        model = session.get(Model, ref)
        if model is None:
            raise DslError("model_not_found", f"party {me} has no model {ref!r}", where)
        return model.path
    return value


def resolve_args(session: Session, args: dict[str, Any], *, me: str) -> dict[str, Any]:
    """``args`` with every table/model reference replaced by its path (a new dict)."""
    return {
        name: resolve_value(session, value, me=me, where=f"parties-args.{me}.{name}")
        for name, value in args.items()
    }

"""What the flow_server needs to know about the algorithm components: names, roles, inputs, outputs.

The registry lives in ``fedalgo.components``; it is imported here lazily, in one place, so the
flow_server can be tested with a small explicit catalog and run with the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    roles: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    version: str = "1"


Catalog = Mapping[str, ComponentInfo]


def catalog_of(specs: Iterable[Any]) -> dict[str, ComponentInfo]:
    """Build a catalog from objects with ``name, roles, inputs, outputs, version`` attributes."""
    return {
        s.name: ComponentInfo(
            s.name, tuple(s.roles), tuple(s.inputs), tuple(s.outputs), str(s.version)
        )
        for s in specs
    }


def component_catalog() -> dict[str, ComponentInfo]:
    """The components registered in ``fedalgo`` (importing it registers them)."""
    from fedalgo.components import all_components  # lazy: the algorithms are heavy to import

    found = all_components()
    specs = found.values() if isinstance(found, Mapping) else found
    return catalog_of(specs)

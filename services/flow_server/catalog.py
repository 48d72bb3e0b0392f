"""What the flow_server knows of the components: names, roles, inputs, outputs, parameters.

The registry lives in ``fedalgo.components``; it is imported here lazily, in one place, so the
flow_server can be tested with a small explicit catalog and run with the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fedcore.params import Params


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    roles: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    version: str = "1"
    params: type[Params] = Params  # the parameter declaration; the base declares none
    description: str = ""


Catalog = Mapping[str, ComponentInfo]


def catalog_of(specs: Iterable[Any]) -> dict[str, ComponentInfo]:
    """Build a catalog from objects with the attributes of :class:`ComponentInfo`."""
    return {
        s.name: ComponentInfo(
            s.name,
            tuple(s.roles),
            tuple(s.inputs),
            tuple(s.outputs),
            str(s.version),
            s.params,
            str(s.description),
        )
        for s in specs
    }


def component_catalog() -> dict[str, ComponentInfo]:
    """The components registered in ``fedalgo`` (importing it registers them)."""
    from fedalgo.components import all_components  # lazy: the algorithms are heavy to import

    found = all_components()
    specs = found.values() if isinstance(found, Mapping) else found
    return catalog_of(specs)

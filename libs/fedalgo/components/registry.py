"""The component registry: name → roles, inputs, outputs and the function to run.

The flow_server validates pipelines against it and the task_engine runs components by name, so
every component module registers itself at import (``import fedalgo.components`` imports them all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fedalgo.context import Context
from fedalgo.errors import UnknownComponentError
from fedcore.params import Params

ComponentFn = Callable[[Context], None]


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component. ``fn`` runs one party's side of it; ``params`` declares the
    arguments it reads (``ctx.params(spec.params)``), which the flow_server checks jobs against."""

    name: str
    roles: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    fn: ComponentFn
    params: type[Params] = Params  # no parameters
    # Bumped when what a component sends or expects changes: parties must run the same version.
    version: str = "1"

    def run(self, ctx: Context) -> None:
        """Run this party's side, after checking every declared argument it was given.

        The flow_server checked them too, but a step's args come from a proposal of another
        party; each role checks all of them here, including those the guest's values override.
        """
        if ctx.role not in self.roles:
            raise ValueError(f"component {self.name} has no role {ctx.role!r}")
        ctx.params(self.params)
        self.fn(ctx)

    @property
    def description(self) -> str:
        """The first line of the component function's docstring."""
        doc = (self.fn.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, ComponentSpec] = {}


def component(
    name: str,
    *,
    roles: Sequence[str],
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    params: type[Params] = Params,
    version: str = "1",
) -> Callable[[ComponentFn], ComponentFn]:
    """Register the decorated function as component ``name``."""

    def register(fn: ComponentFn) -> ComponentFn:
        existing = _REGISTRY.get(name)
        # The same function registering again is a module re-import, not a clash.
        if existing is not None and _origin(existing.fn) != _origin(fn):
            raise ValueError(f"component {name!r} is already registered by {_origin(existing.fn)}")
        if not roles:
            raise ValueError(f"component {name!r} needs at least one role")
        _REGISTRY[name] = ComponentSpec(
            name, tuple(roles), tuple(inputs), tuple(outputs), fn, params, version
        )
        return fn

    return register


def _origin(fn: ComponentFn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def get_component(name: str) -> ComponentSpec:
    """The component registered as ``name``; :class:`UnknownComponentError` if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownComponentError(f"unknown component {name!r} (known: {known})") from None


def all_components() -> dict[str, ComponentSpec]:
    """Every registered component, by name."""
    return dict(sorted(_REGISTRY.items()))

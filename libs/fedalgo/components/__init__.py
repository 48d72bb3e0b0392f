"""The component registry and every built-in component (importing this registers them all)."""

from fedalgo.components import evaluation, hetero_lr, intersect, scale
from fedalgo.components.registry import ComponentSpec, all_components, component, get_component

__all__ = [
    "ComponentSpec",
    "all_components",
    "component",
    "evaluation",
    "get_component",
    "hetero_lr",
    "intersect",
    "scale",
]

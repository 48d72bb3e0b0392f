"""The component registry and every built-in component (importing this registers them all)."""

from fedalgo.components import (
    binning,
    evaluation,
    feature_selection,
    hetero_lr,
    intersect,
    predict,
    scale,
    secureboost,
)
from fedalgo.components.registry import ComponentSpec, all_components, component, get_component

__all__ = [
    "ComponentSpec",
    "all_components",
    "binning",
    "component",
    "evaluation",
    "feature_selection",
    "get_component",
    "hetero_lr",
    "intersect",
    "predict",
    "scale",
    "secureboost",
]

"""fedalgo: Tessera's federated algorithms, written once against :class:`Context`.

Importing the package registers every component (see :mod:`fedalgo.components`).
"""

from fedalgo.components import ComponentSpec, all_components, component, get_component
from fedalgo.context import Context, Federation
from fedalgo.errors import (
    ArgumentError,
    DataError,
    FedAlgoError,
    FederationAborted,
    FederationError,
    FederationTimeout,
    ProtocolError,
    UnknownComponentError,
)

__all__ = [
    "ArgumentError",
    "ComponentSpec",
    "Context",
    "DataError",
    "FedAlgoError",
    "Federation",
    "FederationAborted",
    "FederationError",
    "FederationTimeout",
    "ProtocolError",
    "UnknownComponentError",
    "all_components",
    "component",
    "get_component",
]

"""``/components``: the algorithm components this party runs, with their declared parameters."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from fedcore.params import Params, PlatformArgs, describe
from flow_server import schemas
from flow_server.catalog import ComponentInfo
from flow_server.deps import ServerDep
from flow_server.errors import NotFound
from flow_server.openapi import error_responses

router = APIRouter(tags=["components"])


def _parameters(model: type[Params]) -> list[schemas.ParameterOut]:
    return [schemas.ParameterOut(**asdict(p)) for p in describe(model)]


def _component_out(info: ComponentInfo) -> schemas.ComponentOut:
    return schemas.ComponentOut(
        name=info.name,
        description=info.description,
        roles=list(info.roles),
        inputs=list(info.inputs),
        outputs=list(info.outputs),
        version=info.version,
        parameters=_parameters(info.params),
    )


@router.get("/components", response_model=schemas.ComponentList)
def list_components(server: ServerDep) -> schemas.ComponentList:
    """Every component, and the platform's own keys that any step may be given."""
    return schemas.ComponentList(
        items=[_component_out(server.catalog[name]) for name in sorted(server.catalog)],
        platform_args=_parameters(PlatformArgs),
    )


@router.get(
    "/components/{name}", response_model=schemas.ComponentOut, responses=error_responses(404)
)
def get_component(name: str, server: ServerDep) -> schemas.ComponentOut:
    if name not in server.catalog:
        raise NotFound("component", name)
    return _component_out(server.catalog[name])

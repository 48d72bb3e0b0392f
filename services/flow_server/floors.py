"""This party's security floors against a job, before it is accepted or submitted.

Run once when this party submits a job (against its own args) and once when a peer proposes one
(against the args the proposal gives this party), before any of this party's files is opened.
For every step this party takes part in it checks the step's arguments as they would run here
(pipeline args < common args < this party's args) against ``fedcore.floors.SecurityFloors``:
the Paillier key size, the rows per ``hetero_lr`` batch while this party holds the labels, the
bins per column and the runtime image (when the party lists its images, i.e. runs on
Kubernetes). Every floor crossed is named in one refusal (``security_floor``). For a peer's
proposal it runs inside ``flow_server.policy.judge``, so the refusal is recorded as a decision.
The remaining floor, which data may serve as the label-holding guest of another party's job
(``guest-data``: only data granted to that party ``--as guest``), is the grants' role check
(``flow_server.grants``).

The component checks the floors again on this party's side with the values it really uses (the
key it makes, the smallest batch, the bins it fits), so an argument that only a peer sends at run
time, or a default, cannot slip through.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from fedcore import floors
from fedcore.floors import FloorRefusal, SecurityFloors
from flow_server.dsl import DslError, JobSpec, Pipeline, Step, takes_part

CODE: Final = "security_floor"
IMAGE_ARG: Final = "runtime-image"
# components that make or use a Paillier key (`key-bits`) and that bin columns (`bins`)
_KEYED: Final = frozenset({"hetero_lr", "binning", "hetero_secureboost"})
_BINNED: Final = frozenset({"binning", "hetero_secureboost"})
# the role that holds the labels
GUEST: Final = "guest"


def check_job(
    spec: JobSpec,
    pipeline: Pipeline,
    *,
    me: str,
    party_floors: SecurityFloors,
    images: Collection[str],
) -> None:
    """Raise ``DslError(security_floor)`` naming every floor the job crosses on party ``me``."""
    role = spec.parties[me]
    refusals: list[str] = []
    for i, step in enumerate(pipeline.steps):
        if not takes_part(step, role):
            continue
        args = spec.args_for(step, me)
        for refusal in _step_refusals(step, role, args, party_floors, images):
            refusals.append(f"step '{step.name}' (steps[{i}]): {refusal}")
    if refusals:
        raise DslError(CODE, "; ".join(dict.fromkeys(refusals)), f"parties-args.{me}")


def _step_refusals(
    step: Step,
    role: str,
    args: Mapping[str, Any],
    party_floors: SecurityFloors,
    images: Collection[str],
) -> list[str]:
    out: list[str] = []

    def check(floor_check: Callable[[SecurityFloors, int], None], value: int) -> None:
        try:
            floor_check(party_floors, value)
        except FloorRefusal as exc:
            out.append(str(exc))

    bits = _whole(args.get("key-bits"))
    if step.component in _KEYED and bits is not None:
        check(floors.check_key_bits, bits)
    batch = _whole(args.get("batch-size"))
    if step.component == "hetero_lr" and role == GUEST and batch is not None and batch != -1:
        check(floors.check_batch_rows, batch)
    bins = _whole(args.get("bins"))
    if step.component in _BINNED and bins is not None:
        check(floors.check_bins, bins)
    image = args.get(IMAGE_ARG)
    if images and image is not None and image not in images:
        out.append(
            f"floor runtime-image: {IMAGE_ARG} {str(image)[:200]!r} is not one of this party's "
            f"images ({', '.join(images)})"
        )
    return out


def _whole(value: Any) -> int | None:
    """An argument as a whole number, or None (absent or malformed: the parameter check's)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None

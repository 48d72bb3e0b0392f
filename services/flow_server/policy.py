"""This party's acceptance policy: which of its peers' proposals it accepts on its own, which
wait for its operator, and which it refuses.

A proposal is refused when it asks this party to run a component or take a role outside
``ACCEPT_COMPONENTS`` / ``ACCEPT_ROLES``, when its args for this party cross one of this party's
security floors (``flow_server.floors``: key size, batch rows, bins, runtime image), or when one
of its inputs is not granted to the proposer (``flow_server.grants``; data serves as the
label-holding guest only if granted ``--as guest``: the ``guest-data`` floor). Otherwise it is
accepted at once under ``ACCEPT_POLICY=auto``, and waits in ``pending_approval`` for the operator
under ``ACCEPT_POLICY=manual`` or when its initiator is in ``ACCEPT_MANUAL_PEERS``. Manual
approval never overrides a grant or a floor: the operator approves what they allow, checked again
at the moment of approval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from fedcore.floors import SecurityFloors
from fedcore.settings import PartySettings
from flow_server import floors, grants
from flow_server.dsl import DslError, JobSpec, Pipeline, takes_part


@dataclass(frozen=True)
class Policy:
    """``ACCEPT_POLICY`` and its companions, as the flow_server applies them."""

    mode: str = "auto"  # "auto" or "manual"
    manual_peers: frozenset[str] = frozenset()
    components: frozenset[str] = frozenset()  # empty: any
    roles: frozenset[str] = frozenset()  # empty: any
    # this party's own limits on every step run on its data, and its runtime images (STEP_IMAGES)
    floors: SecurityFloors = field(default_factory=SecurityFloors)
    images: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: PartySettings) -> Policy:
        return cls(
            mode=settings.accept_policy,
            manual_peers=frozenset(settings.manual_peers),
            components=frozenset(settings.accept_components),
            roles=frozenset(settings.accept_roles),
            floors=settings.floors,
            images=settings.step_images,
        )

    def manual_for(self, initiator: str) -> str | None:
        """The rule that makes a proposal from ``initiator`` wait for the operator, or None."""
        if self.mode == "manual":
            return "ACCEPT_POLICY=manual"
        if initiator in self.manual_peers:
            return f"ACCEPT_MANUAL_PEERS lists {initiator}"
        return None


@dataclass(frozen=True)
class Verdict:
    """A proposal this party may take part in: its own args with the granted local paths, and
    whether (by which rule) it waits for the operator."""

    args: dict[str, Any]
    grants: tuple[str, ...]
    wait_rule: str | None

    @property
    def rule(self) -> str:
        used = ", ".join(self.grants) or "none needed"
        return self.wait_rule or f"ACCEPT_POLICY=auto; every input granted (grants: {used})"


def judge(
    session: Session,
    policy: Policy,
    *,
    me: str,
    initiator: str,
    pipeline: Pipeline,
    spec: JobSpec,
) -> Verdict:
    """Apply the policy to a peer's proposal; ``DslError`` names the rule that refuses it."""
    role = spec.parties[me]
    if policy.roles and role not in policy.roles:
        raise DslError(
            "role_not_allowed",
            f"party {me} takes no role {role} in a peer's job (ACCEPT_ROLES: "
            f"{', '.join(sorted(policy.roles))})",
            "parties",
        )
    if policy.components:
        for step in pipeline.steps:
            if takes_part(step, role) and step.component not in policy.components:
                raise DslError(
                    "component_not_allowed",
                    f"party {me} runs no component {step.component} in a peer's job "
                    f"(ACCEPT_COMPONENTS: {', '.join(sorted(policy.components))})",
                    f"steps.{step.name}",
                )
    # the floors look at args only, never at a file: a refusal reads the same whatever exists
    floors.check_job(spec, pipeline, me=me, party_floors=policy.floors, images=policy.images)
    admitted = grants.admit_inputs(
        session, me=me, initiator=initiator, pipeline=pipeline, spec=spec
    )
    return Verdict(admitted.args, admitted.grants, policy.manual_for(initiator))

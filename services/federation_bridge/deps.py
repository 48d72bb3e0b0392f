"""What the routes need, as typed FastAPI dependencies over the state the lifespan opened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, HTTPException, Request

from fedcore.settings import PartySettings
from federation_bridge.admission import PeerAdmission
from federation_bridge.metrics import BridgeMetrics
from federation_bridge.options import BridgeOptions
from federation_bridge.receiver import Receiver
from federation_bridge.sender import Sender


@dataclass(frozen=True)
class BridgeState:
    settings: PartySettings
    options: BridgeOptions
    receiver: Receiver
    sender: Sender
    metrics: BridgeMetrics
    private_key: Ed25519PrivateKey
    admission: PeerAdmission


def get_state(request: Request) -> BridgeState:
    # the internal app shares the peers' app's state, which its lifespan fills once started
    state: BridgeState | None = getattr(request.app.state, "bridge", None)
    if state is None:
        raise HTTPException(503, "the bridge is starting")
    return state


StateDep = Annotated[BridgeState, Depends(get_state)]

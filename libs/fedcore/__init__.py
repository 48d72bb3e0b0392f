"""What the services share: settings, the envelope, topic names, the wire codec, the Kafka bus."""

from fedcore.envelope import Envelope
from fedcore.settings import PartySettings

__all__ = ["Envelope", "PartySettings"]

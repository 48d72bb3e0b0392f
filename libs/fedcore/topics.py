"""Topic names on each party's own Kafka (docs/architecture.md says who produces and consumes)."""

from typing import Final

TASKS: Final = "fl.tasks"
CONTROL: Final = "fl.control"
STATUS: Final = "fl.status"
RESULTS: Final = "fl.results"
LOGS: Final = "fl.logs"
OUT_CTL: Final = "fl.out.ctl"
IN_CTL: Final = "fl.in.ctl"
OUT_FED: Final = "fl.out.fed"
IN_FED: Final = "fl.in.fed"

# Consumed messages a service could not apply, and outbound records the bridge cannot route
# (unknown destination, no id): set aside with their reason (fedcore.deadletter).
DEAD: Final = "fl.dead"

ALL: Final = (
    TASKS,
    CONTROL,
    STATUS,
    RESULTS,
    LOGS,
    OUT_CTL,
    IN_CTL,
    OUT_FED,
    IN_FED,
    DEAD,
)

# The bridge mirrors each outbound topic into the peer's matching inbound topic.
OUTBOUND_TO_INBOUND: Final = {OUT_CTL: IN_CTL, OUT_FED: IN_FED}

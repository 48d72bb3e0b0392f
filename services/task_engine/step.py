"""One step, as its own OS process: ``python -m task_engine.step`` in the step's work dir.

The worker writes the step's spec (:data:`SPEC_FILE`, codec-encoded) into the work dir and
listens on :data:`SOCKET_FILE` there; this process connects, runs the component with a
:class:`fedalgo.context.Context` whose federation, metrics and logging go through that socket,
and reports ``done`` with its outputs or ``failed`` with the exception's type and message (the
local detail, which stays on this party) and its error code (what the other parties are told).
The component gets the party's security floors from the spec, which the worker fills from the
party's own settings.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Final

from fedcore import codec
from fedcore.floors import SecurityFloors
from task_engine.channel import FrameLogHandler, StepChannel, StepFederation

SPEC_FILE: Final = "step.spec"
SOCKET_FILE: Final = "step.sock"

_log = logging.getLogger("task_engine.step")


def read_spec(work_dir: Path) -> dict[str, Any]:
    spec = codec.unpackb((work_dir / SPEC_FILE).read_bytes())
    if not isinstance(spec, dict):
        raise codec.CodecError(f"{SPEC_FILE} must hold a map")
    return spec


def write_spec(work_dir: Path, spec: dict[str, Any]) -> None:
    (work_dir / SPEC_FILE).write_bytes(codec.packb(spec))


def run_component(spec: dict[str, Any], channel: StepChannel) -> dict[str, str]:
    """Run the spec's component against the channel; its outputs ``{name: path}``."""
    # Imported here so that a broken algorithms package is reported as this step's failure.
    from fedalgo.components import get_component
    from fedalgo.computing.choice import SparkOffer, choose, open_computing
    from fedalgo.context import Context

    for module in spec.get("imports", ()):
        importlib.import_module(module)
    component = get_component(spec["component"])
    output_dir = Path(spec["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: str(output_dir / name) for name in component.outputs}
    # The engine: what the job asks for, within what this party offers (its settings, handed
    # to the step as environment variables by the worker).
    choice = choose(spec["args"], SparkOffer.from_environ(os.environ))
    os.environ.update(choice.env)
    with open_computing(choice) as computing:
        _log.info(
            "computing on the %s engine (master %s, %d executors)",
            computing.name,
            computing.master,
            computing.executors,
        )
        channel.metric("computing", computing.describe(), None)
        ctx = Context(
            role=spec["role"],
            party_id=spec["party_id"],
            parties=spec["parties"],
            args=spec["args"],
            inputs=spec["inputs"],
            outputs=outputs,
            federation=StepFederation(channel),
            on_metric=channel.metric,
            computing=computing,
            floors=SecurityFloors.model_validate(spec.get("floors") or {}),
        )
        try:
            component.run(ctx)  # checks the role and the args against its declaration
        finally:
            stages = computing.stage_timings()
            if stages:  # a Spark step: what its stages took, per kind of work
                _log.info("spark stages: %s", stages)
                channel.metric("spark_stages", stages, None)
    return outputs


def main() -> int:
    """Run the step whose work dir is the current directory (a relative socket path stays short)."""
    spec = read_spec(Path.cwd())
    channel = StepChannel.connect(SOCKET_FILE)
    handler = FrameLogHandler(channel)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        outputs = run_component(spec, channel)
    except Exception as exc:  # the step's outcome: reported to the worker, then a non-zero exit
        from fedalgo.errors import failure_code

        _log.error("step failed:\n%s", traceback.format_exc().rstrip())
        root.removeHandler(handler)
        channel.failed(f"{type(exc).__name__}: {exc}", failure_code(exc))
        channel.close()
        return 1
    root.removeHandler(handler)
    channel.done(outputs)
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

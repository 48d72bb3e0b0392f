"""The seed example (examples/hetero_lr) with ``spark-master-name: "local[*]"`` in its job.yaml,
run through its README's calls on a real two-party stack: every party's every step computes on
Spark inside its sandbox, which the step's log and both dashboards say, and the model is the one
the local engine trains from the same job without the key."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties
from example_calls import EXAMPLES, ReadmeCalls, failure, job_yaml

from tessera.sdk import Dashboard, Tessera

pytestmark = pytest.mark.e2e

EXAMPLE = EXAMPLES / "hetero_lr"
STEPS = ["intersect", "scale", "train", "evaluate"]
RAN = {GUEST: STEPS, HOST: STEPS[:-1]}  # evaluation is the guest's alone
JOB_TIMEOUT_S = 600.0  # a JVM per step and party


def _run(two_parties: TwoParties, master: str | None) -> str:
    """The example's job, on ``master`` if given: its id, once it succeeded on both parties."""
    # The outputs of the Spark run go under "output-local[*]": a path Spark must read as it is.
    data, out = two_parties.data, two_parties.root / f"output-{master or 'local'}"
    job = yaml.safe_load(
        job_yaml(
            "hetero_lr",
            {
                GUEST: {"input": str(data.guest_csv), "output": str(out / GUEST)},
                HOST: {"input": str(data.host_csv), "output": str(out / HOST)},
            },
        )
    )
    if master:
        job["common-args"]["spark-master-name"] = master  # what the example's comment says
    with ReadmeCalls(two_parties.stack.party(GUEST).flow_server_url) as guest:
        pipeline_id = guest.upload_pipeline(EXAMPLE / "pipeline.yaml")
        job_id = guest.submit_job(pipeline_id, yaml.safe_dump(job, sort_keys=False))
        finished = guest.wait(job_id, JOB_TIMEOUT_S)
        assert finished["state"] == "success", failure(finished)
    with ReadmeCalls(two_parties.stack.party(HOST).flow_server_url) as host:
        finished = host.wait(job_id, 60.0)
        assert finished["state"] == "success", failure(finished)
    return job_id


@pytest.fixture(scope="module")
def job_id(two_parties: TwoParties) -> str:
    return _run(two_parties, "local[*]")


def _dashboard_steps(two_parties: TwoParties, party: str, job_id: str) -> list[dict[str, Any]]:
    """The dashboard's steps of the job once each of its own tasks has reported an engine."""
    url = f"{two_parties.stack.party(party).base_url('dashboard')}/api/jobs/{job_id}"
    deadline = time.monotonic() + 30.0
    while True:
        steps: list[dict[str, Any]] = httpx.get(url, timeout=10).json()["steps"]
        own = [t for s in steps for t in s["tasks"] if t["party"] == party]
        if (len(own) == len(RAN[party]) and all(t["engine"] for t in own)) or (
            time.monotonic() > deadline
        ):
            return steps
        time.sleep(0.5)


@pytest.mark.parametrize("party", [GUEST, HOST])
def test_every_step_of_each_party_ran_on_spark(
    two_parties: TwoParties, job_id: str, party: str
) -> None:
    steps = _dashboard_steps(two_parties, party, job_id)
    assert [s["name"] for s in steps] == STEPS
    engines = {s["name"]: [(t["party"], t["engine"]) for t in s["tasks"]] for s in steps}
    ran = {s for s, tasks in engines.items() for p, _ in tasks if p == party}
    assert ran == set(RAN[party]), engines
    for step in RAN[party]:
        assert (party, "spark (local[*])") in engines[step], engines
    urls = two_parties.stack.party(party)
    with Tessera(urls.flow_server_url, dashboard_url=urls.base_url("dashboard")) as flow:
        lines = [line for line in flow.logs(job_id).lines if line.party == party]
    started = {
        line.step for line in lines if "computing on the spark engine (master local[*]" in line.line
    }
    assert started == set(RAN[party])


def _weights(two_parties: TwoParties, party: str, job_id: str) -> np.ndarray:
    with ReadmeCalls(two_parties.stack.party(party).flow_server_url) as flow:
        (model,) = flow.models(job_id, "hetero_lr")
    trained = json.loads(Path(model["path"]).read_text())
    return np.array([*trained["weights"], trained.get("intercept", 0.0)])


def test_the_model_is_the_one_the_local_engine_trains(two_parties: TwoParties, job_id: str) -> None:
    """The same job without spark-master-name runs on the local process pool: both parties'
    weights agree (the engines compute the same sums), and so does the AUC."""
    on_local = _run(two_parties, None)
    for party in (GUEST, HOST):
        spark, local = _weights(two_parties, party, job_id), _weights(two_parties, party, on_local)
        assert spark.shape == local.shape and np.abs(spark - local).max() <= 1e-9, party
    aucs = [_auc(two_parties, j) for j in (job_id, on_local)]
    assert aucs[0] is not None and aucs[0] == aucs[1] and aucs[0] > 0.95


def _auc(two_parties: TwoParties, job_id: str) -> float | None:
    """The guest dashboard's AUC of the job (None if it has not reported one within 30 s)."""
    deadline = time.monotonic() + 30.0
    with Dashboard(two_parties.stack.party(GUEST).base_url("dashboard")) as dash:
        while (auc := dash.metrics(job_id).auc) is None and time.monotonic() < deadline:
            time.sleep(0.5)
    return auc

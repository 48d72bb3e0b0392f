"""examples/hetero_secureboost, run through its README's calls on a real two-party stack; the AUC
is checked against scikit-learn's gradient boosting with the same settings on the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties
from example_calls import EXAMPLES, ReadmeCalls, failure, job_yaml
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from tessera.example import join

pytestmark = pytest.mark.e2e

EXAMPLE = EXAMPLES / "hetero_secureboost"
JOB_TIMEOUT_S = 420.0


@pytest.fixture(scope="module")
def finished(two_parties: TwoParties) -> dict[str, Any]:
    data, out = two_parties.data, two_parties.root / "output"
    job_text = job_yaml(
        "hetero_secureboost",
        {
            GUEST: {"input": str(data.guest_csv), "output": str(out / GUEST)},
            HOST: {"input": str(data.host_csv), "output": str(out / HOST)},
        },
    )
    with ReadmeCalls(two_parties.stack.party(GUEST).flow_server_url) as guest:
        pipeline_id = guest.upload_pipeline(EXAMPLE / "pipeline.yaml")
        job_id = guest.submit_job(pipeline_id, job_text)
        job = guest.wait(job_id, JOB_TIMEOUT_S)
        assert job["state"] == "success", failure(job)
        (model,) = guest.models(job_id, "hetero_secureboost")
    with ReadmeCalls(two_parties.stack.party(HOST).flow_server_url) as host:
        host_job = host.wait(job_id, 60.0)
        assert host_job["state"] == "success", failure(host_job)
    return model


def test_the_trees_score_like_scikit_learns_boosting(
    two_parties: TwoParties, finished: dict[str, Any]
) -> None:
    train = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())["steps"][1]["args"]
    joined = join(two_parties.data)
    reference = GradientBoostingClassifier(
        n_estimators=train["num-trees"],
        max_depth=train["max-depth"],
        learning_rate=train["learning-rate"],
        random_state=0,
    ).fit(joined.features, joined.labels)
    sk_auc = float(roc_auc_score(joined.labels, reference.predict_proba(joined.features)[:, 1]))
    auc = finished["metrics"]["auc"]
    assert finished["metrics"]["samples"] == len(joined.ids)
    assert auc > 0.95
    assert abs(auc - sk_auc) < 0.03, (auc, sk_auc)


def test_the_guest_model_names_host_columns_only_anonymously(finished: dict[str, Any]) -> None:
    assert finished["role"] == "guest" and finished["parameters"]["key-bits"] == 2048
    model = json.loads(Path(finished["path"]).read_text())
    host_splits = [n for tree in model["trees"] for n in tree if "split_id" in n]
    assert all(n["feature"].startswith(f"host{HOST}_f") for n in host_splits)
    assert all("threshold" not in n for n in host_splits)

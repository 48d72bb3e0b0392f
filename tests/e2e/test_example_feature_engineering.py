"""examples/feature_engineering (binning → feature selection → hetero LR), run through its README's
calls on a real two-party stack: the kept columns are the top k by IV over both parties, and the
AUC is close to scikit-learn's logistic regression on the same columns of the same rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties
from example_calls import EXAMPLES, ReadmeCalls, failure, job_yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from tessera.example import join

pytestmark = pytest.mark.e2e

EXAMPLE = EXAMPLES / "feature_engineering"
JOB_TIMEOUT_S = 420.0


@dataclass(frozen=True)
class Outcome:
    guest_models: dict[str, dict[str, Any]]  # component → the guest's model row
    host_models: dict[str, dict[str, Any]]


def _by_component(models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["component"]: m for m in models}


def _load(model: dict[str, Any]) -> Any:
    return json.loads(Path(model["path"]).read_text())


@pytest.fixture(scope="module")
def outcome(two_parties: TwoParties) -> Outcome:
    data, out = two_parties.data, two_parties.root / "output"
    job_text = job_yaml(
        "feature_engineering",
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
        guest_models = _by_component(guest.models(job_id))
    with ReadmeCalls(two_parties.stack.party(HOST).flow_server_url) as host:
        host_job = host.wait(job_id, 60.0)
        assert host_job["state"] == "success", failure(host_job)
        host_models = _by_component(host.models(job_id))
    return Outcome(guest_models, host_models)


def _host_columns(two_parties: TwoParties) -> list[str]:
    return two_parties.data.host_csv.read_text().splitlines()[0].split(",")[1:]


def test_the_kept_columns_are_the_top_k_by_iv(two_parties: TwoParties, outcome: Outcome) -> None:
    k = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())["steps"][2]["args"]["k"]
    binning = _load(outcome.guest_models["binning"])
    ivs = {f["name"]: f["iv"] for f in binning["features"]}
    ivs.update({f["name"]: f["iv"] for f in binning["hosts"][HOST]})
    top = set(sorted(ivs, key=lambda name: -ivs[name])[:k])
    guest_kept = _load(outcome.guest_models["feature_selection"])["kept"]
    host_kept = _load(outcome.host_models["feature_selection"])["kept"]
    host_columns = _host_columns(two_parties)
    # the guest knows the host's columns only as host<id>_f<index>
    anonymous = {f"host{HOST}_f{host_columns.index(name)}" for name in host_kept}
    assert set(guest_kept) | anonymous == top
    assert len(guest_kept) + len(host_kept) == k


def test_the_auc_is_close_to_scikit_learns_on_the_kept_columns(
    two_parties: TwoParties, outcome: Outcome
) -> None:
    guest_columns = two_parties.data.guest_csv.read_text().splitlines()[0].split(",")
    guest_features = [c for c in guest_columns[1:] if c != "y"]
    names = guest_features + [f"host:{c}" for c in _host_columns(two_parties)]
    kept = set(_load(outcome.guest_models["feature_selection"])["kept"])
    kept |= {f"host:{c}" for c in _load(outcome.host_models["feature_selection"])["kept"]}
    joined = join(two_parties.data)
    x = StandardScaler().fit_transform(joined.features[:, [names.index(n) for n in sorted(kept)]])
    reference = LogisticRegression(max_iter=1000).fit(x, joined.labels)
    sk_auc = float(roc_auc_score(joined.labels, reference.predict_proba(x)[:, 1]))
    metrics = outcome.guest_models["hetero_lr"]["metrics"]
    assert metrics["samples"] == len(joined.ids)
    assert metrics["auc"] > 0.95
    assert abs(metrics["auc"] - sk_auc) < 0.03, (metrics["auc"], sk_auc)
    assert np.isfinite(metrics["ks"])

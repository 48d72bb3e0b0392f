"""examples/predict, run through its README's calls on a real two-party stack: train with
examples/hetero_secureboost on most rows, export and import each party's model, predict the rows
held out. The guest's scores are checked against the trees walked independently here, on the raw
new rows, with the models read from the exported archives."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_stack import GUEST, HOST, TwoParties
from example_calls import EXAMPLES, ReadmeCalls, archive_member, failure, job_yaml
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 420.0


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *rows])
    return path


@dataclass(frozen=True)
class Split:
    """Each party's training rows and held-out new rows (the guest's new rows without ``y``)."""

    train: dict[str, Path]
    new: dict[str, Path]


def _held_out(row_id: str) -> bool:
    return int(row_id) % 5 == 0


def _split(two_parties: TwoParties) -> Split:
    root = two_parties.root / "predict-data"
    root.mkdir()
    train, new = {}, {}
    for party, path in ((GUEST, two_parties.data.guest_csv), (HOST, two_parties.data.host_csv)):
        header, rows = _read(path)
        train[party] = _write(
            root / f"{party}-train.csv", header, [r for r in rows if not _held_out(r[0])]
        )
        keep = [i for i, c in enumerate(header) if c != "y"]
        new[party] = _write(
            root / f"{party}-new.csv",
            [header[i] for i in keep],
            [[r[i] for i in keep] for r in rows if _held_out(r[0])],
        )
    return Split(train, new)


@dataclass(frozen=True)
class Outcome:
    split: Split
    archives: dict[str, bytes]  # party → its exported model
    predictions: dict[str, Path]  # party → its predict step's output


@pytest.fixture(scope="module")
def outcome(two_parties: TwoParties) -> Outcome:
    split = _split(two_parties)
    out = two_parties.root / "output"
    urls = {p: two_parties.stack.party(p).flow_server_url for p in (GUEST, HOST)}
    with ReadmeCalls(urls[GUEST]) as guest, ReadmeCalls(urls[HOST]) as host:
        calls = {GUEST: guest, HOST: host}
        # the host's grant step: the guest may name these files as the host's inputs
        for path in (split.train[HOST], split.new[HOST]):
            host.grant(GUEST, str(path))
        # 1. train (examples/hetero_secureboost)
        pipeline_id = guest.upload_pipeline(EXAMPLES / "hetero_secureboost" / "pipeline.yaml")
        train_args = {p: {"input": str(split.train[p]), "output": str(out / p)} for p in calls}
        train_id = guest.submit_job(pipeline_id, job_yaml("hetero_secureboost", train_args))
        for party, call in calls.items():
            job = call.wait(train_id, JOB_TIMEOUT_S)
            assert job["state"] == "success", f"party {party}: {failure(job)}"
        # 2. each party exports its own model and imports it again
        archives, imported = {}, {}
        for party, call in calls.items():
            (model,) = call.models(train_id, "hetero_secureboost")
            archives[party] = call.export_model(model["model_id"])
            imported[party] = call.import_model(archives[party])
        host.grant(GUEST, host.model_path(imported[HOST]))  # its imported copy, likewise
        # 3. predict the new rows with the imported models
        pipeline_id = guest.upload_pipeline(EXAMPLES / "predict" / "pipeline.yaml")
        predict_args = {
            p: {"input": str(split.new[p]), "output": str(out / p), "model": f"model:{imported[p]}"}
            for p in calls
        }
        job_id = guest.submit_job(pipeline_id, job_yaml("predict", predict_args))
        for party, call in calls.items():
            job = call.wait(job_id, JOB_TIMEOUT_S)
            assert job["state"] == "success", f"party {party}: {failure(job)}"
    # the host writes where its own settings say (a peer's `output` is not granted to it)
    predictions = {
        p: next(two_parties.root.glob(f"**/{job_id}/{p}/predict/predictions")) for p in calls
    }
    return Outcome(split, archives, predictions)


def _walk(tree: list[dict[str, Any]], goes_left: Any) -> float:
    nodes = {n["id"]: n for n in tree}
    node = nodes[0]
    while "weight" not in node:
        node = nodes[node["left"] if goes_left(node) else node["right"]]
    return float(node["weight"])


def test_the_scores_are_the_exported_trees_walked_on_the_new_rows(outcome: Outcome) -> None:
    guest_model = archive_member(outcome.archives[GUEST], "model")
    host_model = archive_member(outcome.archives[HOST], "model")
    g_header, g_rows = _read(outcome.split.new[GUEST])
    h_header, h_rows = _read(outcome.split.new[HOST])
    host_rows = {r[0]: dict(zip(h_header, r, strict=True)) for r in h_rows}
    expected = {}
    for row in g_rows:
        if row[0] not in host_rows:
            continue  # not in the intersection
        mine = dict(zip(g_header, row, strict=True))
        theirs = host_rows[row[0]]

        def goes_left(node: dict[str, Any], mine: Any = mine, theirs: Any = theirs) -> bool:
            if "split_id" in node:
                split = host_model["splits"][node["split_id"]]
                return float(theirs[split["feature"]]) <= float(split["threshold"])
            name = guest_model["features"][node["feature_index"]]
            return float(mine[name]) <= float(node["threshold"])

        margin = guest_model["init_score"] + sum(_walk(t, goes_left) for t in guest_model["trees"])
        expected[row[0]] = 1.0 / (1.0 + np.exp(-margin))
    header, rows = _read(outcome.predictions[GUEST])
    assert header == ["id", "score"]
    got = {r[0]: float(r[1]) for r in rows}
    assert set(got) == set(expected) and len(got) > 50
    for row_id, score in got.items():
        assert score == pytest.approx(expected[row_id], abs=1e-6), row_id


def test_the_host_learns_no_score(outcome: Outcome) -> None:
    header, rows = _read(outcome.predictions[HOST])
    assert header == ["id"] and rows


def test_held_out_auc_is_close_to_scikit_learns(two_parties: TwoParties, outcome: Outcome) -> None:
    g_header, g_rows = _read(two_parties.data.guest_csv)
    _, h_rows = _read(two_parties.data.host_csv)
    host = {r[0]: [float(v) for v in r[1:]] for r in h_rows}
    ids = [r[0] for r in g_rows if r[0] in host]
    y = {r[0]: int(r[g_header.index("y")]) for r in g_rows}
    features = {
        r[0]: [float(v) for i, v in enumerate(r) if i > 0 and g_header[i] != "y"] + host[r[0]]
        for r in g_rows
        if r[0] in host
    }
    train = [i for i in ids if not _held_out(i)]
    new = [i for i in ids if _held_out(i)]
    reference = GradientBoostingClassifier(
        n_estimators=3, max_depth=3, learning_rate=0.3, random_state=0
    ).fit([features[i] for i in train], [y[i] for i in train])
    sk_auc = roc_auc_score(
        [y[i] for i in new], reference.predict_proba([features[i] for i in new])[:, 1]
    )
    _, rows = _read(outcome.predictions[GUEST])
    auc = roc_auc_score([y[r[0]] for r in rows], [float(r[1]) for r in rows])
    assert auc > 0.9
    assert abs(auc - sk_auc) < 0.05, (auc, sk_auc)

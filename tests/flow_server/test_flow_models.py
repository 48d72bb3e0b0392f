"""Trained models: registered when a two-party job's training step succeeds (with the guest's
evaluation metrics attached), and a ``predict`` job naming ``model:<id>`` and ``table:<name>`` gets
their paths. Both parties are driven in-process (``LocalParty``), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import CATALOG, PIPELINE, Databases, LocalParty, job_yaml
from sqlalchemy import select

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server import crud, datasets, protocol
from flow_server.catalog import ComponentInfo
from flow_server.dsl import DslError, parse_pipeline
from flow_server.models import Model

PREDICT_CATALOG = {
    **CATALOG,
    "predict": ComponentInfo("predict", ("guest", "host"), ("data", "model"), ("predictions",)),
}

PREDICT_PIPELINE = """\
name: predict
steps:
  - name: predict
    component: predict
    inputs: {data: $input, model: $model}
"""

METRICS = {"auc": 0.81, "ks": 0.5, "samples": 100, "roc": {"fpr": [0, 1]}, "confusion": {}}


class Network:
    """Routes fl.out.ctl between the parties; a fake task engine writes real output files."""

    def __init__(self, parties: dict[str, LocalParty]) -> None:
        self.parties = parties
        self.runs: list[Envelope] = []

    def task_engine(self, run: Envelope) -> list[Envelope]:
        party = run.body["party_id"]
        out = Path(run.body["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, str] = {}
        if run.body["component"] == "hetero_lr":
            (out / "model").write_text(json.dumps({"component": "hetero_lr", "party": party}))
            outputs["model"] = str(out / "model")
        if run.body["component"] == "evaluation":
            (out / "metrics").write_text(json.dumps(METRICS))
            outputs["metrics"] = str(out / "metrics")
        outputs.setdefault("data", str(out / "data"))
        outputs.setdefault("predictions", str(out / "predictions"))
        return [
            Envelope(
                type="task.status",
                job_id=run.job_id,
                task=run.task,
                src=party,
                body={"party": party, "state": state, "outputs": outputs},
            )
            for state in ("running", "success")
        ]

    def run(self) -> None:
        moved = True
        while moved:
            moved = False
            for party in self.parties.values():
                for topic, env in party.drain():
                    moved = True
                    if topic == topics.OUT_CTL:
                        self.parties[str(env.dst)].apply(env)
                    elif topic == topics.TASKS:
                        self.runs.append(env)
                        for status in self.task_engine(env):
                            party.apply(status)
                    else:
                        party.apply(env)


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    both = {
        "10000": LocalParty(
            "10000", {"20000"}, databases.new("a"), tmp_path / "out-a", granted=tmp_path
        ),
        "20000": LocalParty(
            "20000", {"10000"}, databases.new("b"), tmp_path / "out-b", granted=tmp_path
        ),
    }
    yield both
    for party in both.values():
        party.close()


def _models(party: LocalParty) -> list[Model]:
    with party.sessions() as s:
        return list(s.scalars(select(Model).order_by(Model.party_id)))


def _train(parties: dict[str, LocalParty], tmp_path: Path) -> str:
    guest, host = tmp_path / "g.csv", tmp_path / "h.csv"
    guest.write_text("id,y,x0\n1,0,0.5\n")
    host.write_text("id,x1\n1,0.2\n")
    job_id = parties["10000"].submit(PIPELINE, job_yaml(guest, host, tmp_path / "out"))
    Network(parties).run()
    assert parties["10000"].job(job_id).state == "success"
    return job_id


def test_training_registers_a_model_on_each_party(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = _train(parties, tmp_path)
    [guest] = _models(parties["10000"])
    [host] = _models(parties["20000"])
    for model, party in ((guest, "10000"), (host, "20000")):
        assert (model.job_id, model.step, model.party_id) == (job_id, "train", party)
        assert model.component == "hetero_lr" and model.source == "job"
        assert json.loads(Path(model.path).read_text())["party"] == party
        # the step's args as they ran: pipeline args, overridden by the job's common args
        assert model.parameters["learning-rate"] == 0.15
        assert model.parameters["max-iter"] == 30
    assert (guest.role, host.role) == ("guest", "host")
    # the guest's evaluation of train.predictions: its scalar metrics, not the curves
    assert guest.metrics == {"auc": 0.81, "ks": 0.5, "samples": 100.0}
    assert host.metrics == {}
    assert "hadoop-config" in host.parameters and "hadoop-config" not in guest.parameters


def _submit_predict(party: LocalParty, job_text: str) -> str:
    party_ctx = protocol.PartyContext(
        party.ctx.me, party.ctx.peers, PREDICT_CATALOG, party.ctx.default_output
    )
    party.ctx = party_ctx
    with party.sessions.begin() as s:
        row = crud.create_pipeline(
            s,
            pipeline=parse_pipeline(PREDICT_PIPELINE, PREDICT_CATALOG),
            yaml_text=PREDICT_PIPELINE,
        )
        return protocol.submit_job(s, party_ctx, pipeline_row=row, job_yaml=job_text).id


def test_a_predict_job_names_models_and_tables(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    _train(parties, tmp_path)
    [guest_model] = _models(parties["10000"])
    [host_model] = _models(parties["20000"])
    new_rows = tmp_path / "new.csv"
    new_rows.write_text("id,x0\n7,0.1\n")
    with parties["10000"].sessions.begin() as s:
        datasets.create_table(
            s,
            table_id="t1",
            name="new-rows",
            path=new_rows,
            source="path",
            schema=datasets.read_sample(new_rows),
            counter=datasets.count_lines(new_rows),
        )
    host_rows = tmp_path / "host-new.csv"
    host_rows.write_text("id,x1\n7,0.3\n")
    parties["20000"].ctx = protocol.PartyContext(
        "20000", frozenset({"10000"}), PREDICT_CATALOG, tmp_path / "out-b"
    )
    job_text = f"""\
parties: ["10000=guest", "20000=host"]
parties-args:
  10000: {{input: "table:new-rows", model: "model:{guest_model.id}", output: {tmp_path / "p"}}}
  20000: {{input: {host_rows}, model: "model:{host_model.id}", output: {tmp_path / "p"}}}
"""
    job_id = _submit_predict(parties["10000"], job_text)
    net = Network(parties)
    net.run()
    runs = {r.body["party_id"]: r for r in net.runs if r.job_id == job_id}
    assert runs["10000"].body["inputs"] == {"data": str(new_rows), "model": guest_model.path}
    assert runs["20000"].body["inputs"] == {"data": str(host_rows), "model": host_model.path}
    # the guest's references never reach the host, resolved or not
    assert parties["20000"].job(job_id).party_args["model"] == host_model.path


def test_an_unknown_reference_is_refused_or_rejected(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    _train(parties, tmp_path)
    host_rows = tmp_path / "host-new.csv"
    host_rows.write_text("id,x1\n7,0.3\n")
    [guest_model] = _models(parties["10000"])
    text = f"""\
parties: ["10000=guest", "20000=host"]
parties-args:
  10000: {{input: "table:nope", model: "model:{guest_model.id}"}}
  20000: {{input: {host_rows}, model: "model:nope"}}
"""
    with pytest.raises(DslError) as err:
        _submit_predict(parties["10000"], text)
    assert err.value.code == "table_not_found"
    assert err.value.where == "parties-args.10000.input"
    # the initiator's references resolve; the host rejects a model it does not have in the words
    # it uses for any input it did not grant (no oracle of which model ids exist)
    parties["20000"].ctx = protocol.PartyContext(
        "20000", frozenset({"10000"}), PREDICT_CATALOG, tmp_path / "out-b"
    )
    guest_rows = tmp_path / "g2.csv"
    guest_rows.write_text("id,x0\n7,0.1\n")
    job_id = _submit_predict(parties["10000"], text.replace("table:nope", str(guest_rows)))
    Network(parties).run()
    job = parties["10000"].job(job_id)
    assert job.state == "rejected"
    assert "input 'model' ($model): not granted to 10000" in (job.reason or "")

"""End to end: two parties as real processes on two real Kafka brokers, driven over HTTP like curl.

The stack is started once for the module (``two_parties`` in conftest); the example job is
submitted to the guest with the demo data.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from e2e_stack import GUEST, HOST, TwoParties
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from fedcore import topics
from fedcore.bus import header, partitions
from fedcore.envelope import Envelope
from tessera.example import PIPELINE_YAML, join
from tessera.sdk import ApiError, Dashboard, JobDetail, Tessera

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 420.0


@dataclass(frozen=True)
class Finished:
    job_id: str
    guest: JobDetail
    host: JobDetail


def _wait(flow: Tessera, job_id: str, timeout_s: float) -> JobDetail:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job = flow.job(job_id)
        except ApiError as exc:
            if exc.status_code != 404 or time.monotonic() > deadline:
                raise
        else:
            if job.finished or time.monotonic() > deadline:
                return job
        time.sleep(0.5)


@pytest.fixture(scope="module")
def finished(two_parties: TwoParties) -> Finished:
    with two_parties.flow(GUEST) as guest, two_parties.flow(HOST) as host:
        pipeline_id = guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        job_id = guest.submit_job(pipeline_id, two_parties.job_text().encode()).job_id
        guest_job = _wait(guest, job_id, JOB_TIMEOUT_S)
        host_job = _wait(host, job_id, 60.0)
    return Finished(job_id, guest_job, host_job)


def test_the_job_succeeds_under_one_id_on_both_parties(finished: Finished) -> None:
    for party, job in ((GUEST, finished.guest), (HOST, finished.host)):
        assert job.job_id == finished.job_id
        assert job.state == "success", f"party {party}: {job.state}: {job.failure_reason()}"
        assert job.tasks, f"party {party} reports no tasks"
        assert all(t.state == "success" for t in job.tasks), (party, job.tasks)


def test_the_guest_dashboard_shows_auc_and_ks(two_parties: TwoParties, finished: Finished) -> None:
    with Dashboard(two_parties.stack.party(GUEST).base_url("dashboard")) as dash:
        deadline = time.monotonic() + 30.0
        metrics = dash.metrics(finished.job_id)
        while (metrics.auc is None or metrics.ks is None) and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = dash.metrics(finished.job_id)
    assert metrics.auc is not None and metrics.ks is not None, metrics
    assert abs(metrics.auc - _sklearn_auc(two_parties)) < 0.01, metrics.auc
    assert 0.0 < metrics.ks <= 1.0


def _sklearn_auc(two_parties: TwoParties) -> float:
    """scikit-learn on what the job trains on: the joined rows, standardised, with hetero_lr's
    default penalty (alpha 0.01 on the mean loss is C = 1 / (0.01 n)); AUC on those rows, as the
    job's evaluate step computes it."""
    joined = join(two_parties.data)
    x = StandardScaler().fit_transform(joined.features)
    model = LogisticRegression(C=1 / (0.01 * len(joined.labels)), max_iter=10_000)
    model.fit(x, joined.labels)
    return float(roc_auc_score(joined.labels, model.decision_function(x)))


# --- what the host's bridge received ---------------------------------------------------------


async def _inbound_envelopes(bootstrap: str, topic: str, job_id: str) -> list[Envelope]:
    """Every envelope of ``job_id`` on ``topic`` (chunked ones reassembled), read from the start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (await partitions(bootstrap, [topic]))[topic]]
        assert tps, f"{topic} has no partitions on {bootstrap}"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        whole: list[bytes] = []
        chunks: dict[str, dict[int, bytes]] = {}
        counts: dict[str, int] = {}
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for record in (r for records in batch.values() for r in records):
                if record.key != job_id.encode():
                    continue
                chunk = header(record, "chunk")
                if chunk is None:
                    whole.append(record.value)
                    continue
                index, count = (int(x) for x in chunk.split("/"))
                msg_id = header(record, "id") or ""
                chunks.setdefault(msg_id, {})[index] = record.value
                counts[msg_id] = count
        for msg_id, parts in chunks.items():
            assert len(parts) == counts[msg_id], f"incomplete chunked message {msg_id}"
            whole.append(b"".join(parts[i] for i in range(counts[msg_id])))
        return [Envelope.from_bytes(v) for v in whole]
    finally:
        await consumer.stop()


def _vectors(value: Any) -> Iterator[np.ndarray | list[Any]]:
    """Every array and list inside a decoded value."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from _vectors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _vectors(item)


def _leak(vector: np.ndarray | list[Any], n_rows: int) -> str | None:
    """Why ``vector`` looks like plaintext labels or residuals of the ``n_rows`` training rows."""
    arr = vector
    if isinstance(vector, list):
        if not vector or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vector
        ):
            return None
        if any(isinstance(x, int) and abs(x) >= 2**63 for x in vector):
            return None  # big integers: ciphertexts
        arr = np.asarray(vector)
    assert isinstance(arr, np.ndarray)
    if arr.ndim == 0 or arr.shape[0] != n_rows or arr.dtype.kind not in "biuf":
        return None
    if set(np.unique(arr).tolist()) <= {0, 1, -1}:
        return "a 0/1 vector of the training length (labels)"
    if arr.dtype.kind == "f":
        return f"a float array of shape {arr.shape} (residuals or raw values)"
    return None


async def test_the_host_bridge_receives_no_plaintext_labels_or_residuals(
    two_parties: TwoParties, finished: Finished, kafka_pair: tuple[Any, Any]
) -> None:
    n_rows = len(join(two_parties.data).ids)
    envelopes = await _inbound_envelopes(
        f"127.0.0.1:{kafka_pair[1].port}", topics.IN_FED, finished.job_id
    )
    assert envelopes, "the host's bridge produced no federation records for the job"
    leaks = [
        f"{env.task}/{env.body.get('tag')}: {why}"
        for env in envelopes
        for vec in _vectors(env.body)
        if (why := _leak(vec, n_rows)) is not None
    ]
    assert not leaks, leaks
    # and what training sends the host is ciphertexts (so the check above saw real traffic)
    assert any(
        isinstance(vec, list) and vec and all(isinstance(x, int) and x >= 2**64 for x in vec)
        for env in envelopes
        if env.task == "train"
        for vec in _vectors(env.body)
    ), "no ciphertexts reached the host during training"


# --- bad input over HTTP ---------------------------------------------------------------------


def _pipeline() -> dict[str, Any]:
    loaded = yaml.safe_load(PIPELINE_YAML.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _job(two_parties: TwoParties) -> dict[str, Any]:
    loaded = yaml.safe_load(two_parties.job_text())
    assert isinstance(loaded, dict)
    return loaded


def _dump(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _rejected(call: Any, *patterns: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    err = info.value
    assert 400 <= err.status_code < 500, err
    assert err.message.strip(), f"{err.status_code} without a message"
    said = str(err)  # the message and where the server found the problem
    assert any(p.lower() in said.lower() for p in patterns), f"{said!r} names none of {patterns}"
    return err


def _bad_pipelines() -> dict[str, tuple[bytes, tuple[str, ...]]]:
    unknown = _pipeline()
    unknown["steps"][0]["component"] = "no_such_component"
    duplicate = _pipeline()
    duplicate["steps"].append(copy.deepcopy(duplicate["steps"][0]))  # no shared nodes: no aliases
    cycle = {
        "name": "cycle",
        "steps": [
            {"name": "a", "component": "intersect", "inputs": {"data": "b.data"}},
            {"name": "b", "component": "intersect", "inputs": {"data": "a.data"}},
        ],
    }
    first = _pipeline()["steps"][0]["name"]
    return {
        "malformed yaml": (b"name: [unclosed\nsteps: {", ("yaml", "pars", "malformed")),
        "empty upload": (b"", ("empty",)),
        "unknown component": (_dump(unknown), ("no_such_component",)),
        "duplicate step": (_dump(duplicate), ("duplicate", first)),
        "cycle": (_dump(cycle), ("cycl", "circular")),
    }


@pytest.mark.parametrize("case", list(_bad_pipelines()))
def test_a_bad_pipeline_is_refused_with_a_reason(two_parties: TwoParties, case: str) -> None:
    content, patterns = _bad_pipelines()[case]
    with two_parties.flow(GUEST) as flow:
        _rejected(lambda: flow.upload_pipeline(content), *patterns)


def test_an_unknown_pipeline_id_is_404(two_parties: TwoParties) -> None:
    with two_parties.flow(GUEST) as flow:
        err = _rejected(
            lambda: flow.submit_job("no-such-pipeline", two_parties.job_text().encode()),
            "no-such-pipeline",
            "not found",
            "unknown",
        )
    assert err.status_code == 404


def _bad_jobs(two_parties: TwoParties) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    stranger = _job(two_parties)
    stranger["parties"] = ["30000=guest", f"{HOST}=host"]
    args = stranger["parties-args"]
    args["30000"] = args.pop(next(k for k in args if str(k) == GUEST))
    no_args = _job(two_parties)
    no_args["parties-args"] = {k: v for k, v in no_args["parties-args"].items() if str(k) != HOST}
    return {
        "this party not in parties": (_dump(stranger), (GUEST, "this party")),
        "party without parties-args": (_dump(no_args), (HOST,)),
        "malformed yaml": (b"parties: [\n", ("yaml", "pars", "malformed")),
        "empty upload": (b"", ("empty",)),
    }


@pytest.mark.parametrize(
    "case",
    ["this party not in parties", "party without parties-args", "malformed yaml", "empty upload"],
)
def test_a_bad_job_is_refused_with_a_reason(two_parties: TwoParties, case: str) -> None:
    with two_parties.flow(GUEST) as flow:
        pipeline_id = flow.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        content, patterns = _bad_jobs(two_parties)[case]
        _rejected(lambda: flow.submit_job(pipeline_id, content), *patterns)


def test_the_stack_reports_every_service_healthy(two_parties: TwoParties) -> None:
    rows = two_parties.stack.status()
    assert len(rows) == 8
    assert all(r.healthy and r.pid for r in rows), rows

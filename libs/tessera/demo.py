"""``python -m tessera.demo`` (``make demo``): two parties train the example hetero-LR job.

Makes the demo data, starts both parties (deploy/env/party-*.env), submits the example with the HTTP
calls a user makes with curl, follows the job, prints its outcome next to scikit-learn's, and stops
everything it started unless ``KEEP=1``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import yaml

from tessera.envfiles import EXAMPLE_ENV_FILES, ROOT, PartyEnv
from tessera.example import PIPELINE_YAML, DemoData, make_demo_data, party_roles, render_job
from tessera.example import sklearn_auc as baseline_auc
from tessera.sdk import Dashboard, JobDetail, Tessera
from tessera.stack import Stack, StackError

RUN_DIR = ROOT / ".run" / "demo"
POLL_S = 0.5


def _progress(job: JobDetail, total_steps: int, elapsed_s: float, tty: bool) -> str:
    total = len(job.steps) or total_steps
    done = job.steps_done()
    line = f"  job {job.job_id}: {done}/{total} steps done, {job.state} ({elapsed_s:.0f} s)"
    return f"\r{line:<78}" if tty else line


def follow(flow: Tessera, job_id: str, total_steps: int, timeout_s: float) -> JobDetail:
    """Poll the job until it ends, showing a progress line; return its last view."""
    tty = sys.stdout.isatty()
    start = time.monotonic()
    last = ""
    while True:
        job = flow.job(job_id)
        line = _progress(job, total_steps, time.monotonic() - start, tty)
        if tty or line.split("(")[0] != last.split("(")[0]:
            print(line, end="" if tty else "\n", flush=True)
            last = line
        if job.finished:
            if tty:
                print()
            return job
        if time.monotonic() - start > timeout_s:
            if tty:
                print()
            return job
        time.sleep(POLL_S)


def wait_finished(flow: Tessera, job_id: str, timeout_s: float) -> JobDetail:
    deadline = time.monotonic() + timeout_s
    job = flow.job(job_id)
    while not job.finished and time.monotonic() < deadline:
        time.sleep(POLL_S)
        job = flow.job(job_id)
    return job


def wait_metrics(dash: Dashboard, job_id: str, timeout_s: float) -> tuple[float, float]:
    """AUC and KS from the dashboard, once it has aggregated them."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = dash.metrics(job_id)
        auc, ks = metrics.auc, metrics.ks
        if auc is not None and ks is not None:
            return auc, ks
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dashboard has no AUC/KS for job {job_id}: {metrics}")
        time.sleep(POLL_S)


def run_example(stack: Stack, data: DemoData, job_text: str, timeout_s: float) -> int:
    roles = party_roles(yaml.safe_load(job_text))
    guest_id = next(p for p, r in roles.items() if r == "guest")
    guest = stack.party(guest_id)
    others: list[PartyEnv] = [stack.party(p) for p in roles if p != guest_id]
    pipeline = PIPELINE_YAML.read_bytes()
    total_steps = len(yaml.safe_load(pipeline).get("steps") or [])

    for party in others:  # their env files grant the demo data (GRANT_INPUT_PATHS_<guest>)
        with Tessera(party.flow_server_url) as peer:
            granted = peer.grants(peer=guest_id, active=True).items
        for g in granted:
            what = g.path or f"table:{g.table_name}"
            print(f"party {party.party_id} grants {guest_id}: {what} (as {g.role or 'output'})")
        if not granted:
            print(f"party {party.party_id} grants {guest_id} nothing: it will refuse the job")
    with Tessera(guest.flow_server_url) as flow:
        print(f"POST {guest.flow_server_url}/pipelines  (file=@{PIPELINE_YAML.relative_to(ROOT)})")
        pipeline_id = flow.upload_pipeline(pipeline).pipeline_id
        print(f"POST {guest.flow_server_url}/pipelines/{pipeline_id}/jobs  (parameters=@job.yaml)")
        job_id = flow.submit_job(pipeline_id, job_text.encode()).job_id
        job = follow(flow, job_id, total_steps, timeout_s)

    print(f"\njob id: {job_id}")
    print(f"  party {guest_id} (guest): {job.state}")
    for party in others:
        with Tessera(party.flow_server_url) as peer:
            their = wait_finished(peer, job_id, 30.0 if job.finished else 0.0)
        print(f"  party {party.party_id} ({roles[party.party_id]}): {their.state}")
    if job.state != "success":
        why = job.failure_reason() if job.finished else f"not finished after {timeout_s:.0f} s"
        print(f"the job did not succeed: {why}", file=sys.stderr)
        return 1

    with Dashboard(guest.base_url("dashboard")) as dash:
        auc, ks = wait_metrics(dash, job_id, 30.0)
    reference = baseline_auc(data)
    print(f"  AUC {auc:.4f}   KS {ks:.4f}   (federated, from the guest dashboard)")
    print(f"  AUC {reference:.4f}   scikit-learn LogisticRegression, joined standardised data")
    if abs(auc - reference) > 0.01:
        print(f"  note: the AUCs differ by {abs(auc - reference):.4f} (more than 0.01)")
    print("dashboards:")
    for party in (guest, *others):
        print(f"  party {party.party_id}: {party.dashboard_url}")
    return 0


def main(*, keep: bool | None = None) -> int:
    """Run the demo; ``keep`` (default: ``$KEEP`` set and not 0) leaves the parties running."""
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    if keep is None:
        keep = os.environ.get("KEEP", "") not in ("", "0")
    timeout_s = float(os.environ.get("DEMO_TIMEOUT_S", "600"))
    data = make_demo_data(RUN_DIR / "data")
    job_text = render_job(data, RUN_DIR / "output")
    job_file = RUN_DIR / "job.yaml"
    job_file.write_text(job_text)
    print(f"demo data: {_rel(data.guest_csv)} (guest), {_rel(data.host_csv)} (host)")
    print(f"job:       {_rel(job_file)}")
    print("starting parties 10000 and 20000 (Kafka + flow_server, task_engine, bridge, dashboard)")
    try:
        stack = Stack(EXAMPLE_ENV_FILES)
        stack.up()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for line in stack.urls():
            print(f"  {line}")
        return run_example(stack, data, job_text, timeout_s)
    finally:
        if keep:
            print("KEEP=1: the parties keep running; stop them with `make down`")
        else:
            stack.down()
            print("stopped both parties")
        print(f"demo wall time: {time.monotonic() - started:.1f} s")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    sys.exit(main())

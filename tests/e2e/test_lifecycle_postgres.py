"""End to end on PostgreSQL, as in production: test_lifecycle's tests (stop and rerun, pause and
resume, a host's failure, a refused proposal, a flow_server killed with SIGKILL mid-job and
restarted) once more, with each party's flow_server on its own database of the session's
PostgreSQL instead of the SQLite default.

The tests and their fixtures are test_lifecycle's, collected here a second time; only the stack's
env files differ (``own_env``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
import pytest
from e2e_stack import GUEST, HOST, TwoParties

# Collected again in this module, on this module's stack.
from test_lifecycle import (  # noqa: F401
    Lifecycle,
    paused_then_resumed,
    test_a_flow_server_killed_mid_job_is_restarted_and_the_job_finishes,
    test_a_proposal_the_host_cannot_accept_ends_rejected_with_its_reason,
    test_a_step_failing_on_the_host_fails_the_job_on_both_with_the_hosts_reason,
    test_stop_during_training_cancels_both_parties_and_rerun_reuses_earlier_steps,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_env(postgres: Any) -> Mapping[str, Mapping[str, str]]:
    run = uuid.uuid4().hex[:8]
    return {
        party: {"DATABASE_URL": postgres.new_database(f"e2e_{party}_{run}")}
        for party in (GUEST, HOST)
    }


@pytest.fixture(scope="module")
def lifecycle(two_parties: TwoParties) -> Lifecycle:
    return Lifecycle.start(two_parties)


def test_each_party_keeps_its_jobs_in_its_postgresql_database(
    lifecycle: Lifecycle, own_env: Mapping[str, Mapping[str, str]]
) -> None:
    """Runs last in this module: the stack really ran on PostgreSQL, every job of the tests above
    is in both parties' databases."""
    with lifecycle.flow(GUEST) as guest:
        jobs = {job.job_id for job in guest.jobs().items}
    assert len(jobs) >= 4, jobs
    for party in (GUEST, HOST):
        with psycopg.connect(own_env[party]["DATABASE_URL"]) as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM jobs")}
        assert jobs <= stored, (party, jobs - stored)

"""Summaries of typed records (built here, not parsed from HTCondor): counts add up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.condor.records import Job, JobStatus, Slot
from orchestrator.condor.views import summarize_pool, summarize_queue

jobs = st.builds(
    Job, cluster=st.integers(1, 5), proc=st.integers(0, 3),
    owner=st.sampled_from(["alice", "bob", "carol"]), status=st.sampled_from(list(JobStatus)),
    batch_name=st.sampled_from(["", "sweep", "render"]), request_cpus=st.integers(1, 8),
    request_memory_mb=st.integers(1, 4096), request_gpus=st.integers(0, 1),
    qdate=st.none(), remote_host=st.none(), hold_reason=st.none())
slots = st.builds(
    Slot, name=st.text(min_size=1, max_size=5), machine=st.sampled_from(["a", "b", "c"]),
    state=st.sampled_from(["Unclaimed", "Claimed", "Owner"]),
    activity=st.sampled_from(["Idle", "Busy"]), load_avg=st.floats(0, 8),
    memory_mb=st.integers(0, 10_000), cpus=st.integers(0, 16), gpus=st.integers(0, 1),
    slot_type=st.just("Partitionable"), ec2_instance_id=st.none(), pool=st.none(),
    entered_current_state=st.none())


@given(st.lists(jobs, max_size=40))
def test_queue_rows_add_up(js: list[Job]) -> None:
    summary = summarize_queue(js)
    t = summary.totals
    assert t.total == len(js)
    assert t.idle == sum(j.status is JobStatus.IDLE for j in js)
    assert t.held == sum(j.status is JobStatus.HELD for j in js)
    for rows in (summary.owners, summary.batches):
        assert sum(r.total for r in rows) == t.total
        assert sum(r.running for r in rows) == t.running
    for row in summary.batches:
        assert row.batch  # a batch without JobBatchName is named after its cluster
    assert summary.to_json()["totals"]["total"] == len(js)


@given(st.lists(slots, max_size=30))
def test_pool_totals_add_up(ss: list[Slot]) -> None:
    summary = summarize_pool(ss)
    assert summary.slots == len(ss) == sum(summary.by_state.values())
    assert summary.cpus == sum(s.cpus for s in ss) == sum(m.cpus for m in summary.machines)
    assert [m.machine for m in summary.machines] == sorted({s.machine for s in ss})
    assert summary.to_json()["totals"]["machines"] == len(summary.machines)

"""Issue 18 on a real pool: workers advertise their own type's resources (less what the
kernel keeps), jobs land only on machines they match, jobs no shape can run are reported
and never launched for, and the number of launches is the bin-packed need.

Every check reads EC2's records and HTCondor's job history, never the autoscaler's own
account of what it did.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.aws.capacity_store import DynamoCapacityStore
from tests.support.pool import (
    PoolHandle,
    config_with,
    events,
    launched_since,
    no_workers,
    pool_report,
    queue_states,
    start_autoscaler,
    stop_autoscaler,
    submit,
)
from tests.support.sandbox import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

# Passes the autoscaler keeps making while the jobs no shape can run stay idle: at the
# live default of 20 s a pass, about 20 minutes of a real pool.
PASSES_AFTER = 60


def _history(pool: PoolHandle, cluster: int) -> list[dict[str, object]]:
    out = pool.sandbox.exec(
        pool.cm, f"condor_history -json -constraint 'ClusterId == {cluster}' -attributes "
                 "ProcId,JobStatus,ExitCode,NumJobStarts,MachineAttrEC2InstanceType0",
        check=False).stdout.strip()
    return json.loads(out) if out else []


def test_a_mixed_burst_lands_where_it_matches_and_the_rest_is_reported(
        clean_pool: PoolHandle, tmp_path: Path) -> None:
    pool = clean_pool
    # Both types' sizes and prices from the sandbox's EC2, as on AWS.
    env = config_with(pool, tmp_path, instance_types=("t3.medium", "t3.large"),
                      interval_s=2.0, idle_timeout_s=10.0, arrival_window_s=0.0,
                      spare_largest_jobs=0)
    started = time.time()
    where = "job_machine_attrs = EC2InstanceType"
    # The jobs that need a t3.large first: the negotiator offers machines to a user's jobs
    # in submission order, and small jobs matched first to a t3.large would leave these
    # waiting for another one (a launch the queue then really needs).
    # Exactly a t3.medium's nominal memory: its workers advertise less, a t3.large more.
    nominal = submit(pool, 1, seconds=20, cpus=1, memory=4096, extra=where)
    only_large = submit(pool, 1, seconds=20, cpus=1, memory=512,
                        extra=f'{where}\nrequirements = TARGET.EC2InstanceType == "t3.large"')
    small = submit(pool, 4, seconds=20, cpus=1, memory=512, extra=where)
    nowhere = submit(pool, 1, seconds=5, cpus=1, memory=512,
                     extra='requirements = TARGET.EC2InstanceType == "m7i.large"')
    gpu = submit(pool, 1, seconds=5, cpus=1, memory=512, extra="request_gpus = 1")

    log = tmp_path / "autoscale.log"
    proc = start_autoscaler(pool, log, env=env)
    try:
        runnable = (small, nominal, only_large)
        wait_for(lambda: all(len([j for j in _history(pool, c) if j["JobStatus"] == 4])
                             == n for c, n in zip(runnable, (4, 1, 1), strict=True)),
                 timeout=900, interval=3, what="the six runnable jobs to complete",
                 report=lambda: pool_report(pool, log))
        wait_for(lambda: no_workers(pool), timeout=600, interval=3,
                 what="the pool to return to zero workers",
                 report=lambda: pool_report(pool, log))
        wait_for(lambda: sum(1 for e in events(log) if e["event"] == "plan") >= PASSES_AFTER,
                 timeout=600, interval=3, what=f"{PASSES_AFTER} passes")
    finally:
        assert stop_autoscaler(proc) == 0

    ever = launched_since(pool, started)
    types = sorted(i["InstanceType"] for i in ever)
    # The bin-packed need: the 4096 MB job opens a t3.large, the job that needs one joins
    # it, the four small ones fill two t3.medium. Nothing more in all those passes.
    launches = [e for e in events(log) if e["event"] == "launch"]
    assert types == ["t3.large", "t3.medium", "t3.medium"], (types, launches)
    ran = {c: [j.get("MachineAttrEC2InstanceType0") for j in _history(pool, c)]
           for c in runnable}
    assert ran[nominal] == ["t3.large"] and ran[only_large] == ["t3.large"]
    assert all(t in ("t3.medium", "t3.large") for t in ran[small])
    assert all(j["ExitCode"] == 0 and j["NumJobStarts"] == 1
               for c in runnable for j in _history(pool, c))
    assert queue_states(pool, nowhere) == [1] and queue_states(pool, gpu) == [1]
    reasons = {e["reason"] for e in events(log) if e["event"] == "unschedulable"}
    assert any("Requirements match no shape" in r for r in reasons), reasons
    assert any("drives no GPU" in r for r in reasons), reasons
    # What the autoscaler learned, as kept in the pool's table (this test's workers, or
    # earlier ones of the session: the store outlives them).
    stored = DynamoCapacityStore(pool.sandbox.client("dynamodb"), pool.pool.config.pool)
    learned = {t: c.memory_mb for t, c in stored.load().items()}
    assert learned["t3.medium"] < 4096 < learned["t3.large"] < 8192, learned

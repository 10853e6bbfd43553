"""The forecast spare (orchestrator/autoscaler/forecast.py): known answers, and the same
arrivals seen by the live observer and the simulator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.forecast import (
    arrival_rate_spare,
    forecast_spare,
    largest_request,
    next_change,
)
from orchestrator.autoscaler.planner.model import IdleJobs, Observation, Submitted
from orchestrator.autoscaler.planner.strategies import plan
from orchestrator.autoscaler.runtime.observe import build
from orchestrator.condor.records import Job, JobStatus
from orchestrator.sim.engine import Simulation
from orchestrator.sim.pool import SimParams
from orchestrator.sim.swf import read_swf
from tests.support.policy import QUEUE_ONLY, jobs, obs, startd, worker

NOW = 10_000.0
CFG = AutoscalerConfig(arrival_window_s=120.0, arrival_lead_s=20.0, spare_largest_jobs=1,
                       spare_max_cores=32)


def with_queue(o: Observation, submitted: list[Submitted] = [],  # noqa: B006
               running: list[tuple[int, int]] = []) -> Observation:  # noqa: B006
    return Observation(o.pool, o.instances, o.startds, o.idle_jobs, o.running_jobs,
                       tuple(submitted), tuple(running))


def launched(p: object) -> dict[str, int]:
    return {x.instance_type: x.count for x in p.launches}  # type: ignore[attr-defined]


def test_rate_counts_the_window_only() -> None:
    sub = [Submitted(NOW - 200, 64, 5),  # left the window
           Submitted(NOW - 100, 2, 30), Submitted(NOW - 10, 1, 6),
           Submitted(NOW + 5, 8, 1)]  # clock skew: not yet
    # 66 cores in 120 s, times a 20 s lead
    assert arrival_rate_spare(sub, CFG, NOW) == math.ceil(66 * 20 / 120)
    assert arrival_rate_spare(sub, CFG.model_copy(update={"arrival_window_s": 0.0}), NOW) == 0
    assert next_change(sub, CFG, NOW) == NOW - 100 + 120
    assert next_change([], CFG, NOW) == math.inf


def test_largest_request_and_cap() -> None:
    o = with_queue(obs(idle=[jobs(3, cpus=4), IdleJobs(500, 1024, 0, 2)]), running=[(16, 2)])
    assert largest_request(o, CFG) == 16  # the 500-core jobs fit no shape: not forecast
    assert forecast_spare(o, CFG, NOW) == 16
    four = CFG.model_copy(update={"spare_largest_jobs": 4})
    assert forecast_spare(o, four, NOW) == 32  # 64, capped at spare_max_cores
    assert forecast_spare(obs(), CFG, NOW) == 0  # empty queue: no forecast


def test_rate_wins_over_sizes_in_a_burst() -> None:
    burst = [Submitted(NOW - 60, 1, 600)]
    o = with_queue(obs(), burst, running=[(1, 600)])
    assert forecast_spare(o, CFG.model_copy(update={"spare_max_cores": 1000}), NOW) == 100


def test_spare_launched_with_the_job_it_follows() -> None:
    o = with_queue(obs(idle=[jobs(1, cpus=8, mem=8192)]), [Submitted(NOW - 5, 8, 1)])
    p = plan(o, CFG, NOW)
    assert launched(p) == {"c6i.2xlarge": 2}  # one for the job, one kept free for the next
    assert any("spare" in n for n in p.notes)
    assert launched(plan(o, AutoscalerConfig(**QUEUE_ONLY), NOW)) == {"c6i.2xlarge": 1}


def test_idle_worker_kept_while_jobs_run_then_removed() -> None:
    insts = [worker("i-busy", "c6i.2xlarge"), worker("i-idle", "c6i.2xlarge")]
    sds = [startd("i-busy", 8, 16384, free_cpus=0, free_mem=0, claimed=True),
           startd("i-idle", 8, 16384, since=NOW - 1000)]
    busy = with_queue(obs(insts, sds, running=1), running=[(8, 1)])
    p = plan(busy, CFG, NOW)
    assert not p.removals and any("kept as spare" in n for n in p.notes)
    # the running job ended: the queue is empty and the idle worker goes at once
    done = with_queue(obs(insts, [sds[0], sds[1]], running=0))
    assert [r.instance_id for r in plan(done, CFG, NOW).removals] == ["i-idle"]


def test_surplus_idle_workers_go_before_the_idle_timeout() -> None:
    busy = [worker("i-busy")] + [worker(f"i-{n}") for n in range(4)]
    sds = [startd("i-busy", free_cpus=0, free_mem=0, claimed=True)]
    running = [(1, 2)]  # the forecast keeps room for one more 1-core job

    def removed(idle_for: float, queue: list[tuple[int, int]] = running) -> list[str]:
        o = with_queue(obs(busy, sds + [startd(f"i-{n}", since=NOW - idle_for - n)
                                        for n in range(4)], running=len(queue)),
                       running=queue)
        return sorted(r.instance_id for r in plan(o, CFG, NOW).removals)

    # Past surplus_idle_s (40 s): all but one worker (the spare) go, longest idle first.
    assert removed(45) == ["i-1", "i-2", "i-3"]
    assert removed(30) == []  # not yet
    # With an empty queue there is no forecast: only idle_timeout_s (150 s) applies.
    assert removed(45, []) == []
    assert removed(150, []) == ["i-0", "i-1", "i-2", "i-3"]
    off = CFG.model_copy(update={"surplus_idle_s": 0.0})
    o = with_queue(obs(busy, [*sds, startd("i-0", since=NOW - 45)], running=2),
                   running=running)
    assert not plan(o, off, NOW).removals


def test_spare_for_small_jobs_is_small_machines() -> None:
    # 120 one-core jobs in the last minute: 20 cores of spare. Ten 2-core machines, not one
    # 32-core machine that would stay up for the longest job any arrival puts on it.
    o = with_queue(obs(running=120), [Submitted(NOW - 60, 1, 120)], running=[(1, 120)])
    assert launched(plan(o, CFG, NOW)) == {"c6i.large": 10}
    # Short of instance slots (half of max_workers): as many as fit.
    assert launched(plan(o, CFG.model_copy(update={"max_workers": 12}), NOW)) == {
        "c6i.large": 6}


def test_parallelcluster_ignores_the_forecast() -> None:
    o = with_queue(obs(idle=[jobs(1, cpus=8, mem=8192)]), [Submitted(NOW - 5, 8, 1)],
                   running=[(8, 3)])
    cfg = CFG.model_copy(update={"policy": "parallelcluster", "fixed_shape": "c6i.2xlarge"})
    assert launched(plan(o, cfg, NOW)) == {"c6i.2xlarge": 1}


def job(n: int, status: JobStatus, cpus: int, qdate: float) -> Job:
    return Job(cluster=n, proc=0, owner="u", status=status, batch_name="b", request_cpus=cpus,
               request_memory_mb=1024, request_gpus=0, qdate=int(qdate), remote_host=None,
               hold_reason=None)


def test_live_observer_reads_the_queue_like_the_simulator(tmp_path: Path) -> None:
    """The contract: for the queue the simulator had at each pass, the live observer's
    fields built from job ads (QDate, RequestCpus, JobStatus) are the ones it passed."""
    rng = np.random.default_rng(3)
    n = 120
    submit = np.sort(rng.integers(0, 2000, n))
    run = rng.integers(1, 600, n)
    cpus = rng.choice([1, 2, 8], n)
    lines = ["; Version: 2.2\n"] + [
        " ".join(str(int(x)) for x in [k + 1, s, -1, r, c, -1, -1, c, -1, 1024, 1] + [-1] * 7)
        + "\n" for k, (s, r, c) in enumerate(zip(submit, run, cpus, strict=True))]
    path = tmp_path / "t.swf"
    path.write_text("".join(lines))
    trace = read_swf(path)  # submit times relative to the first job, as simulated
    submit, run, cpus = trace.submit, trace.run, trace.cpus
    cfg = AutoscalerConfig(max_workers=10, max_launch_per_cycle=3)
    sim = Simulation(trace, cfg, SimParams(seed=2))
    sim.record = []
    result = sim.run()
    seen = 0
    for o, now, _ in sim.record:
        if (result.start == now).any():
            continue  # a job started in the same instant: before or after this pass?
        queue = []
        for k in range(len(trace)):
            st = result.start[k]
            if submit[k] > now or (st == st and st + run[k] <= now):
                continue  # not yet submitted, or finished
            status = JobStatus.RUNNING if st == st and st <= now else JobStatus.IDLE
            queue.append(job(k, status, int(cpus[k]), float(submit[k])))
        live = build("sim", [], [], queue, now, cfg.arrival_window_s).observation
        assert live.submitted == o.submitted
        assert live.running_requests == o.running_requests
        seen += bool(o.submitted) and bool(o.running_requests)
    assert seen > 5

"""The simulator's workers advertise what real ones would (nominal memory less the kernel's
share, orchestrator/sim/hardware.py): jobs are placed by it, the planner learns it as the
live runtime does, and jobs no worker advertises enough for end the run, counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Capacity
from orchestrator.sim.engine import Simulation
from orchestrator.sim.hardware import advertised_memory_mb
from orchestrator.sim.pool import SimParams
from orchestrator.sim.report import markdown
from orchestrator.sim.runner import run_trace
from orchestrator.sim.scenarios import beyond_advertised, fixed_shape_for, schedulable
from orchestrator.sim.swf import read_swf

EXACT = SimParams(boot_s=60.0, boot_jitter_s=0.0, negotiation_s=20.0)
CFG = AutoscalerConfig()
LARGE = CFG.shape("c6i.large")
GB_KB = 1024 * 1024


def swf(tmp_path: Path, rows: list[tuple[float, float, int, int]]) -> Path:
    """rows: (submit, run, procs, mem_kb_per_proc); status completed, other fields -1."""
    lines = ["; Version: 2.2\n"]
    for n, (submit, run, procs, mem_kb) in enumerate(rows, 1):
        f = [n, submit, -1, run, procs, -1, -1, procs, -1, mem_kb, 1] + [-1] * 7
        lines.append(" ".join(str(int(x)) for x in f) + "\n")
    p = tmp_path / "t.swf"
    p.write_text("".join(lines))
    return p


def test_workers_advertise_less_than_nominal_and_the_planner_learns_it(tmp_path: Path
                                                                       ) -> None:
    sim = Simulation(read_swf(swf(tmp_path, [(0, 100, 1, GB_KB)])), CFG, EXACT)
    sim.record = []
    r = sim.run()
    assert r.start.tolist() == [60.0]
    first, *_, last = sim.record
    assert first[0].capacities == {}  # nothing has joined yet: nominal less the reserve
    launched = first[2].launches[0].instance_type
    shape = CFG.shape(launched)
    assert shape is not None
    advertised = advertised_memory_mb(shape.memory_mb)
    assert last[0].capacities == {launched: Capacity(shape.cpus, advertised, 0, 0)}
    sd = last[0].startds[0]
    assert sd.total_memory_mb == advertised < shape.memory_mb


def test_a_job_asking_nominal_memory_goes_to_the_next_shape(tmp_path: Path) -> None:
    # 1 core, 4096 MB: c6i.large's nominal memory, more than it advertises (3824 MB)
    sim = Simulation(read_swf(swf(tmp_path, [(0, 100, 1, 4 * GB_KB)])), CFG, EXACT)
    sim.record = []
    r = sim.run()
    assert r.start.tolist() == [60.0]
    types = {launch.instance_type for _, _, p in sim.record for launch in p.launches}
    assert "c6i.large" not in types and types


def test_a_static_worker_never_runs_a_job_it_does_not_advertise_enough_for(tmp_path: Path
                                                                           ) -> None:
    # 4000 MB fits c6i.large's nominal 4096 MB, not its advertised 3824 MB: the job stays
    # idle, the other runs, and the run ends with it
    assert LARGE is not None
    rows = [(0, 30, 1, 4000 * 1024), (0, 30, 1, 3000 * 1024)]
    r = Simulation(read_swf(swf(tmp_path, rows)), CFG, EXACT, (LARGE, 1)).run()
    assert np.isnan(r.start[0]) and r.start[1] == 0.0
    assert r.unfit == 1 and r.end_s == 30.0


@pytest.mark.parametrize("policy", ["binpack", "naive", "parallelcluster"])
def test_jobs_no_shape_can_hold_are_reported_and_end_the_run(tmp_path: Path, policy: str
                                                             ) -> None:
    # queue only (no forecast spare), so every launch is for an idle job
    cfg = AutoscalerConfig(policy=policy, shapes=(LARGE,), fixed_shape="c6i.large",
                           max_workers=5, arrival_window_s=0.0, spare_largest_jobs=0)
    rows = [(0, 100, 1, 1024 * 1024), (10, 100, 1, 4000 * 1024), (20, 50, 2, 1024 * 1024),
            (3000, 10, 1, 4050 * 1024)]
    sim = Simulation(read_swf(swf(tmp_path, rows)), cfg, SimParams(seed=1))
    sim.record = []
    r = sim.run()  # returns: no launch loop for the jobs that can never run
    started = ~np.isnan(r.start)
    assert started.tolist() == [True, False, True, False]
    assert r.unfit == 2 and r.end_s < 3000 + 600
    assert r.launches == r.terminations
    if policy != "naive":  # the old rule has no notion of it
        assert r.unschedulable == 2
        reported = {(u.request_cpus, u.request_memory_mb)
                    for _, _, p in sim.record for u in p.unschedulable}
        assert reported == {(1, 4000), (1, 4050)}
        # never launched for: each launch took a job that ran
        assert r.launches <= 2


def test_the_single_type_baselines_take_the_type_that_runs_every_job(tmp_path: Path
                                                                     ) -> None:
    rows = [(0, 10, 1, 1024 * 1024), (5, 10, 1, 4036 * 1024)]
    trace = schedulable(read_swf(swf(tmp_path, rows)), CFG.shapes)
    assert len(trace) == 2  # both within c6i.large's nominal 4096 MB
    # c6i.large (4096 MB nominal) advertises 3824 MB: the cheapest that holds 4036 MB is
    # r6i.large
    assert fixed_shape_for(trace, CFG.shapes).name == "r6i.large"
    assert beyond_advertised(trace, CFG.shapes) == 0
    assert beyond_advertised(trace, (LARGE,)) == 1


def test_the_report_counts_jobs_beyond_what_any_shape_advertises(tmp_path: Path) -> None:
    assert LARGE is not None
    rows = [(0, 100, 1, 1024 * 1024), (10, 100, 1, 4000 * 1024)]
    rep = run_trace(swf(tmp_path, rows), EXACT, ["ours", "old"],
                    base=AutoscalerConfig(shapes=(LARGE,)))
    assert rep.beyond_advertised == 1
    text = markdown(rep)
    assert "never run: 1" in text
    assert "Ours (defaults) (1 never ran, 1 of them reported unschedulable)" in text

"""The simulator's accounting on small hand-made traces with known answers."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from orchestrator.autoscaler.planner import strategies as policy_module
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.cli.sim import app
from orchestrator.errors import ConfigError
from orchestrator.sim.engine import RunResult, Simulation
from orchestrator.sim.pool import SimParams
from orchestrator.sim.scenarios import demand_percentile, schedulable
from orchestrator.sim.swf import Trace, read_swf
from orchestrator.vocabulary import InstanceState, Role

EXACT = SimParams(boot_s=60.0, boot_jitter_s=0.0, negotiation_s=20.0)
LARGE = AutoscalerConfig().shape("c6i.large")
PRICE_S = 0.085 / 3600


def swf(tmp_path: Path, rows: list[tuple[float, ...]], name: str = "t.swf",
        header: str = "; Version: 2.2\n; MaxProcs: 4\n") -> Path:
    """rows: (submit, run, procs, mem_kb_per_proc, status); other fields -1."""
    lines = [header]
    for n, (submit, run, procs, mem_kb, status) in enumerate(rows, 1):
        f = [n, submit, -1, run, procs, -1, -1, procs, -1, mem_kb, status] + [-1] * 7
        lines.append(" ".join(str(int(x)) for x in f) + "\n")
    p = tmp_path / name
    p.write_text("".join(lines))
    return p


def simulate(path: Path, cfg: AutoscalerConfig | None = None, static: int = 0,
             params: SimParams = EXACT) -> tuple[Simulation, RunResult]:
    cfg = cfg or AutoscalerConfig()
    assert LARGE is not None
    sim = Simulation(read_swf(path), cfg, params, (LARGE, static) if static else None)
    return sim, sim.run()


def test_one_job_cold_start(tmp_path: Path) -> None:
    # the trace starts at 1005 (shifted to 0): tick 0 launches, joins 60, negotiated 60
    _, r = simulate(swf(tmp_path, [(1005, 100, 1, 1024, 1)]))
    assert r.start.tolist() == [60.0]
    assert r.launches == 1 and r.terminations == 1
    assert math.isclose(r.paid_s, 160.0)  # the run ends with the last job


def test_booting_capacity_takes_the_next_job(tmp_path: Path) -> None:
    # job 2 (submitted 25) fits on the core left on the instance booting for job 1
    cfg = AutoscalerConfig(arrival_window_s=0.0, spare_largest_jobs=0)
    _, r = simulate(swf(tmp_path, [(0, 1, 1, 1024, 1), (25, 100, 1, 1024, 1)]), cfg)
    assert r.start.tolist() == [60.0, 60.0]
    assert r.launches == 1


def test_idle_worker_removed_after_timeout_and_relaunched(tmp_path: Path) -> None:
    cfg = AutoscalerConfig(idle_timeout_s=150)
    _, r = simulate(swf(tmp_path, [(0, 100, 1, 1024, 1), (1000, 50, 1, 1024, 1)]), cfg)
    assert r.start.tolist() == [60.0, 1060.0]
    # worker 1: launched 0, idle from 160, timer 310, removed at tick 320 -> 320 s paid;
    # worker 2: launched 1000, job ends 1110, run ends -> 110 s paid
    assert r.launches == 2 and r.terminations == 2
    assert math.isclose(r.paid_s, 320.0 + 110.0)
    assert math.isclose(r.cost, 430.0 * PRICE_S)
    assert math.isclose(r.paid_core_s, 430.0 * 2)


def test_minimum_billing_on_a_static_pool(tmp_path: Path) -> None:
    _, r = simulate(swf(tmp_path, [(0, 10, 1, 1024, 1)]), static=1)
    assert r.start.tolist() == [0.0]
    assert r.plan_calls == 0
    assert math.isclose(r.paid_s, 60.0)  # 10 s used, 60 s billed


def test_jobs_share_a_worker_and_queue_fifo(tmp_path: Path) -> None:
    # static pool of one 2-core worker, three 1-core jobs at 0: two start at 0, third
    # at the negotiation after the first ends (ends 30 -> negotiated at 40)
    _, r = simulate(swf(tmp_path, [(0, 30, 1, 1024, 1), (0, 50, 1, 1024, 1),
                                   (0, 10, 1, 1024, 1)]), static=1)
    assert r.start.tolist() == [0.0, 0.0, 40.0]
    assert math.isclose(r.paid_s, 60.0)  # ends at 50


def test_memory_limits_packing(tmp_path: Path) -> None:
    # 3 GB jobs: only one fits a 4 GB c6i.large at a time
    _, r = simulate(swf(tmp_path, [(0, 30, 1, 3 * 1024 * 1024, 1),
                                   (0, 30, 1, 3 * 1024 * 1024, 1)]), static=1)
    assert r.start.tolist() == [0.0, 40.0]


def test_swf_quirks(tmp_path: Path) -> None:
    rows = [(500, 10, 1, -1, 1), (510, -1, 1, -1, 5), (520, 0, 2, -1, 0), (530, 5, 4, 2048, 0),
            (505, 20, 300, -1, 1)]
    p = swf(tmp_path, rows, header="; Computer: test\n;\n; UnixStartTime: 1\n")
    gz = tmp_path / "t.swf.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    for path in (p, gz):
        tr = read_swf(path)
        assert tr.start_offset == 500 and tr.submit.tolist() == [0, 5, 30]
        assert tr.dropped == {"never ran (run time <= 0 or unknown)": 2}
        assert tr.status == {"completed": 2, "failed": 1}
        assert tr.memory_mb.tolist() == [1024, 300 * 1024, 8]  # default 1 GB/core; KB/core
    kept = schedulable(read_swf(p), AutoscalerConfig().shapes)
    assert len(kept) == 2 and kept.dropped["larger than any instance shape"] == 1


def test_bad_trace_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.swf"
    bad.write_text("1 2 3\n")
    with pytest.raises(ConfigError, match=r"bad\.swf:1"):
        read_swf(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_swf(tmp_path / "nope.swf")


def test_demand_percentile() -> None:
    tr = Trace("x", np.array([0.0, 0.0]), np.array([100.0, 10.0]), np.array([1, 4]),
               np.array([1, 1]))
    assert demand_percentile(tr, 50) == 1 and demand_percentile(tr, 95) == 5


@pytest.mark.parametrize("policy", ["binpack", "naive", "parallelcluster"])
def test_every_policy_finishes_and_accounts(tmp_path: Path, policy: str) -> None:
    rng = np.random.default_rng(1)
    rows = [(float(t), float(r), float(c), 1024.0, 1.0)
            for t, r, c in zip(np.sort(rng.integers(0, 5000, 200)), rng.integers(1, 600, 200),
                               rng.choice([1, 2, 4], 200), strict=True)]
    cfg = AutoscalerConfig(policy=policy, fixed_shape="c6i.xlarge", max_workers=20)
    sim, r = simulate(swf(tmp_path, rows), cfg, params=SimParams(seed=3))
    tr = sim.trace
    assert not np.isnan(r.start).any() and (r.start >= tr.submit).all()
    busy = float((tr.run * tr.cpus).sum())
    assert busy <= r.paid_core_s
    assert r.launches == r.terminations


def test_same_observation_same_plan(tmp_path: Path) -> None:
    """The contract with the live autoscaler: the simulator calls the very same policy,
    and each observation it built gives the same plan when planned directly."""
    rng = np.random.default_rng(7)
    rows = [(float(t), float(r), float(c), 1024.0, 1.0)
            for t, r, c in zip(np.sort(rng.integers(0, 3000, 150)), rng.integers(1, 900, 150),
                               rng.choice([1, 2, 8], 150), strict=True)]
    cfg = AutoscalerConfig(max_workers=10, max_launch_per_cycle=3)
    sim = Simulation(read_swf(swf(tmp_path, rows)), cfg, SimParams(seed=1))
    assert sim.policy is policy_module.STRATEGIES["binpack"].plan
    sim.record = []
    sim.run()
    assert len(sim.record) > 10
    acted = 0
    for obs, now, plan in sim.record:
        assert policy_module.plan(obs, cfg, now) == plan
        cm = [i for i in obs.instances if i.role == Role.CENTRAL_MANAGER.value]
        assert cm and cm[0].state is InstanceState.RUNNING
        acted += not plan.is_empty
    assert acted > 0


def test_cli_json(tmp_path: Path) -> None:
    p = swf(tmp_path, [(0, 100, 1, 1024, 1), (50, 100, 2, 1024, 1)])
    res = CliRunner().invoke(app, ["run", str(p), "--json", "--processes", "1",
                                   "--png", str(tmp_path / "figs")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    names = [m["scenario"] for m in data[0]["metrics"]]
    assert names == ["ours", "ours-cost", "ours-wait", "old", "parallelcluster", "static-p95"]
    assert (tmp_path / "figs" / "sim-t.png").is_file()


def test_job_queue_splits_by_age_and_compacts() -> None:
    from orchestrator.sim.jobqueue import JobQueue

    submit = [0.0, 10.0, 20.0, 30.0, 40.0]
    q = JobQueue(submit)
    for j in range(5):
        q.push((1, 1024), j)
    q.push((2, 2048), 4)
    view = q.observe(now=45.0, ready_after_s=20.0)  # jobs at <= 25 s are ready
    assert [(i.request_cpus, i.count, i.qdate) for i in view] == [
        (1, 3, 20.0), (1, 2, 40.0), (2, 1, 40.0)]
    assert q.next_ready(45.0, 20.0) == 50.0  # job 3 (30 s) becomes ready
    assert q.next_ready(45.0, 0.0) == math.inf
    assert [q.pop((1, 1024)) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert [k for _, k in q.by_age()] == [(2, 2048)]

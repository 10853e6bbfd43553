"""The target cells of issue 6 the default does not meet, measured: writes the "Trace
replay: the cells not met" section of bench/RESULTS.md.

- NASA, KTH, HPC2N: ParallelCluster-like's rule (the whole need on the one type that fits
  every job) with shorter idle timeouts than its 10 minutes, against the old policy's cost.
- LPC-EGEE: where the paid core-seconds go, for ours, the old policy and our cheapest
  queue-only setting.

Usage: .venv/bin/python -m bench.sim_limits [--traces DIR] [--processes N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.results import git_revision, machine, update_section
from bench.sim_traces import TRACES
from orchestrator.autoscaler.planner.baselines import parallelcluster_config
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import IdleJobs, Plan, Submitted
from orchestrator.sim.engine import Simulation
from orchestrator.sim.metrics import Bounds, bounds, measure
from orchestrator.sim.pool import UP, SimParams
from orchestrator.sim.scenarios import build_scenarios, fixed_shape_for, schedulable
from orchestrator.sim.swf import Trace, read_swf

IDLE_TIMEOUTS = (150.0, 300.0, 600.0)  # 600: ParallelCluster-like itself
BIG_JOB_TRACES = ("NASA-iPSC-1993-3.1-cln", "KTH-SP2-1996-2.1-cln", "HPC2N-2002-2.2-cln")
LPC = "LPC-EGEE-2004-1.2-cln"
QUEUE_ONLY = {"idle_timeout_s": 30.0, "arrival_window_s": 0.0, "spare_largest_jobs": 0}


class Accounting(Simulation):
    """A run that also splits the paid core-seconds, as seen at each autoscaler pass and
    held until the next: booting, wholly idle machines, free cores of machines that run
    a job, busy cores."""

    def __init__(self, trace: Trace, config: AutoscalerConfig, params: SimParams) -> None:
        super().__init__(trace, config, params)
        self.split = np.zeros(4)
        self._last: tuple[float, npt.NDArray[np.float64]] | None = None

    def reconcile(self, now: float, idle: tuple[IdleJobs, ...], running: int,
                  submitted: tuple[Submitted, ...] = (),
                  running_requests: tuple[tuple[int, int], ...] = ()) -> Plan:
        plan = super().reconcile(now, idle, running, submitted, running_requests)
        if self._last is not None:
            self.split += (now - self._last[0]) * self._last[1]
        self._last = (now, self._levels())
        return plan

    def _levels(self) -> npt.NDArray[np.float64]:
        pool, level = self.pool, np.zeros(4)
        for w in pool.alive:  # booting or up
            cpus = pool.shape[w].cpus
            if pool.state[w] != UP:
                level[0] += cpus
            elif not pool.running[w]:
                level[1] += cpus
            else:
                level[2] += pool.free_cpus[w]
                level[3] += cpus - pool.free_cpus[w]
        return level


Job = tuple[Trace, Bounds, str, AutoscalerConfig, bool]


def _run(args: Job) -> tuple[str, dict[str, float]]:
    trace, b, name, cfg, split = args
    sim = (Accounting if split else Simulation)(trace, cfg, SimParams())
    m = measure(name, name, trace, sim.run(), b, 0.0)
    out = {"cost": m.cost, "p95": m.wait_p95_s, "util": m.utilization}
    if isinstance(sim, Accounting):
        out.update(zip(("booting", "idle", "fragmented", "busy"),
                       sim.split / sim.split.sum(), strict=True))
    return name, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    params = SimParams()
    base = AutoscalerConfig().model_copy(update={"max_workers": params.max_workers})
    jobs: list[Job] = []
    for name in (*BIG_JOB_TRACES, LPC):
        trace = schedulable(read_swf(args.traces / f"{name}.swf.gz"), base.shapes)
        fixed = fixed_shape_for(trace, base.shapes)
        b = bounds(trace, params, base.shapes, fixed)
        old_cfg = build_scenarios(trace, params, ["old"], base)[0].config
        jobs.append((trace, b, f"{name}|old", old_cfg, name == LPC))
        if name == LPC:
            jobs.append((trace, b, f"{name}|ours", base, True))
            jobs.append((trace, b, f"{name}|queue-only", base.model_copy(update=QUEUE_ONLY),
                         True))
            continue
        for idle in IDLE_TIMEOUTS:  # run by our engine, so the idle timeout can vary
            cfg = parallelcluster_config(base, fixed).model_copy(update={"idle_timeout_s": idle})
            jobs.append((trace, b, f"{name}|{idle:.0f}", cfg, False))
    t0 = time.monotonic()
    with mp.get_context("fork").Pool(args.processes) as pool:
        res = dict(pool.imap(_run, jobs, chunksize=1))
    rows = ["| trace | idle timeout s | cost $ | p95 s | cost vs old |", "|---|---|---|---|---|"]
    for name in BIG_JOB_TRACES:
        old = res[f"{name}|old"]
        rows.append(f"| {name} | old policy | {old['cost']:,.0f} | {old['p95']:.0f} | |")
        for idle in IDLE_TIMEOUTS:
            r = res[f"{name}|{idle:.0f}"]
            rows.append(f"| {name} | {idle:.0f} | {r['cost']:,.0f} | {r['p95']:.0f} | "
                        f"{r['cost'] / old['cost'] - 1:+.1%} |")
    split = ["| setting | cost $ | p95 s | utilization | booting | wholly idle | "
             "free on machines running a job | busy |", "|---|---|---|---|---|---|---|---|"]
    for key, label in (("ours", "ours (defaults)"), ("old", "old policy"),
                       ("queue-only", "ours, queue only: idle_timeout_s 30, no spare")):
        r = res[f"{LPC}|{key}"]
        split.append(f"| {label} | {r['cost']:,.0f} | {r['p95']:.0f} | {r['util']:.3f} | "
                     f"{r['booting']:.1%} | {r['idle']:.1%} | {r['fragmented']:.1%} | "
                     f"{r['busy']:.1%} |")
    body = "\n".join([
        "Command: `.venv/bin/python -m bench.sim_limits`  ",
        f"Machine: {machine()}  ",
        f"Revision: {git_revision()}, {time.strftime('%Y-%m-%d')}, "
        f"{time.monotonic() - t0:.0f} s  ",
        "Same model as the section above. What these numbers mean is under \"Reading the "
        "results\" there.",
        "",
        "**ParallelCluster-like's rule with shorter idle timeouts** (the whole need on the one "
        "type that fits every job, 128 cores on these traces; 600 s is ParallelCluster-like "
        "itself):",
        "",
        *rows,
        "",
        f"**{LPC}: where the paid core-seconds go** (sampled at each autoscaler pass):",
        "",
        *split,
    ])
    update_section("sim_limits", "Trace replay: the cells not met", body)
    print(body)


if __name__ == "__main__":
    main()

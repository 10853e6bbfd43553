"""Replay one trace under several scenarios (in parallel processes) and measure them."""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.sim.engine import RunResult, Simulation
from orchestrator.sim.metrics import Bounds, Metrics, bounds, measure
from orchestrator.sim.pool import SimParams
from orchestrator.sim.scenarios import (
    Scenario,
    beyond_advertised,
    build_scenarios,
    demand_percentile,
    fixed_shape_for,
    schedulable,
)
from orchestrator.sim.swf import Trace, read_swf


@dataclass
class TraceReport:
    trace: str
    jobs_in_file: int
    jobs_simulated: int
    dropped: dict[str, int]
    status: dict[str, int]
    span_s: float
    demand_p95_cores: float
    bounds: Bounds
    metrics: list[Metrics]
    samples: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    wall_s: float = 0.0
    # Jobs kept in the replay that no shape's workers advertise enough for.
    beyond_advertised: int = 0


def _run_one(args: tuple[Trace, Scenario, SimParams]) -> tuple[RunResult, float]:
    trace, sc, params = args
    t0 = time.process_time()
    fixed = sc.config.shape(sc.config.fixed_shape) if sc.config.fixed_shape else None
    static = (fixed, sc.static_workers) if sc.static_workers and fixed else None
    result = Simulation(trace, sc.config, params, static).run()
    return result, time.process_time() - t0


def run_trace(path: str | Path, params: SimParams, names: list[str] | None = None,
              base: AutoscalerConfig | None = None, max_jobs: int | None = None,
              processes: int = 1) -> TraceReport:
    t0 = time.monotonic()
    base = base or AutoscalerConfig()
    raw = read_swf(path, max_jobs=max_jobs)
    trace = schedulable(raw, base.shapes)
    scenarios = build_scenarios(trace, params, names, base)
    fixed = fixed_shape_for(trace, base.shapes)
    b = bounds(trace, params, base.shapes, fixed)
    jobs = [(trace, sc, params) for sc in scenarios]
    if processes > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(min(processes, len(jobs))) as workers:
            outs = workers.map(_run_one, jobs, chunksize=1)
    else:
        outs = [_run_one(j) for j in jobs]
    metrics = [measure(sc.name, sc.label, trace, summary, b, cpu)
               for sc, (summary, cpu) in zip(scenarios, outs, strict=True)]
    return TraceReport(
        trace.name, raw.total_lines, len(trace), dict(trace.dropped), dict(trace.status),
        float(trace.submit[-1]), demand_percentile(trace, 95.0), b, metrics,
        {sc.name: s.samples for sc, (s, _) in zip(scenarios, outs, strict=True)},
        time.monotonic() - t0, beyond_advertised(trace, base.shapes))

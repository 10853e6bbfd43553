"""What a run cost and how long jobs waited, next to the lower bounds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from orchestrator.autoscaler.planner.config import InstanceShape
from orchestrator.sim.engine import RunResult
from orchestrator.sim.pool import SimParams
from orchestrator.sim.swf import Trace


@dataclass(frozen=True)
class Bounds:
    """Oracle lower bounds: a job on a cold pool waits at least one boot and one
    negotiation; no pool pays for less than the busy core-seconds at the cheapest price per
    core (utilization 1)."""

    wait_s: float
    cost: float
    instance_hours: float  # busy core-seconds / cores per instance (of the fixed shape)
    utilization: float = 1.0


@dataclass(frozen=True)
class Metrics:
    scenario: str
    label: str
    jobs: int
    never_started: int
    wait_mean_s: float
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    instance_hours: float
    cost: float
    utilization: float
    launches: int
    terminations: int
    plan_calls: int
    cpu_s: float
    # distances from the bounds
    p95_over_bound_s: float
    cost_over_bound: float  # cost / bound
    utilization_gap: float  # bound - utilization
    # Jobs that never ran because the planner found no shape that offers what they ask.
    unschedulable: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def bounds(trace: Trace, params: SimParams, shapes: tuple[InstanceShape, ...],
           fixed: InstanceShape) -> Bounds:
    busy = float((trace.run * trace.cpus).sum())
    per_core = min(s.price_per_hour / s.cpus for s in shapes)
    return Bounds(params.boot_s + params.negotiation_s, busy / 3600.0 * per_core,
                  busy / 3600.0 / fixed.cpus)


def _r(x: float, nd: int = 1) -> float:
    return round(float(x), nd) if math.isfinite(x) else math.nan


def measure(name: str, label: str, trace: Trace, result: RunResult, b: Bounds,
            cpu_s: float) -> Metrics:
    started = ~np.isnan(result.start)
    wait = (result.start - trace.submit)[started]
    busy = float((trace.run[started] * trace.cpus[started]).sum())
    r = result
    util = busy / r.paid_core_s if r.paid_core_s else 0.0
    if wait.size:
        p50, p95 = (float(x) for x in np.percentile(wait, [50, 95]))
        mean, mx = float(wait.mean()), float(wait.max())
    else:
        mean = p50 = p95 = mx = math.nan
    return Metrics(
        name, label, len(trace), int((~started).sum()), _r(mean), _r(p50), _r(p95), _r(mx),
        _r(r.paid_s / 3600.0), _r(r.cost, 2), _r(util, 3), r.launches, r.terminations,
        r.plan_calls, _r(cpu_s, 2), _r(p95 - b.wait_s),
        _r(r.cost / b.cost if b.cost else math.nan, 3), _r(b.utilization - util, 3),
        r.unschedulable)

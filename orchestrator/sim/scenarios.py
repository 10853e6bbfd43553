"""The policy settings compared side by side, and the per-trace facts they need."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.errors import ConfigError
from orchestrator.sim.hardware import advertised_memory_mb
from orchestrator.sim.pool import SimParams
from orchestrator.sim.swf import Trace


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    config: AutoscalerConfig
    static_workers: int = 0  # > 0: a static pool of config.fixed_shape, no autoscaler


def _fitting(trace: Trace, shapes: tuple[InstanceShape, ...], advertised: bool
             ) -> npt.NDArray[np.bool_]:
    fits = np.zeros(len(trace), dtype=bool)
    for s in shapes:
        mem = advertised_memory_mb(s.memory_mb) if advertised else s.memory_mb
        fits |= (trace.cpus <= s.cpus) & (trace.memory_mb <= mem)
    return fits


def schedulable(trace: Trace, shapes: tuple[InstanceShape, ...]) -> Trace:
    """The trace without jobs larger than every shape's nominal size (they are reported,
    not run). Jobs that fit a shape's nominal memory but not what its workers advertise
    stay: the planner reports them unschedulable and the run counts them."""
    return trace.subset(_fitting(trace, shapes, False), "larger than any instance shape")


def beyond_advertised(trace: Trace, shapes: tuple[InstanceShape, ...]) -> int:
    """Jobs no shape's workers advertise enough for (they can never run)."""
    return int((~_fitting(trace, shapes, True)).sum())


def fixed_shape_for(trace: Trace, shapes: tuple[InstanceShape, ...]) -> InstanceShape:
    """The one type a single-type policy needs: the cheapest whose workers advertise
    enough for every job that any shape can run."""
    runnable = _fitting(trace, shapes, True)
    if not runnable.any():
        return max(shapes, key=lambda s: (s.cpus, s.memory_mb))
    c, m = int(trace.cpus[runnable].max()), int(trace.memory_mb[runnable].max())
    fits = [s for s in shapes
            if s.cpus >= c and advertised_memory_mb(s.memory_mb) >= m and s.gpus == 0]
    if not fits:
        fits = [max(shapes, key=lambda s: (s.cpus, s.memory_mb))]
    return min(fits, key=lambda s: (s.price_per_hour, s.cpus))


def demand_percentile(trace: Trace, q: float) -> float:
    """Time-weighted percentile of the cores the queue asks for if every job started at
    submit (the demand curve an oracle would follow)."""
    t = np.concatenate([trace.submit, trace.submit + trace.run])
    d = np.concatenate([trace.cpus, -trace.cpus])
    order = np.argsort(t, kind="stable")
    t, level = t[order], np.cumsum(d[order])
    dur = np.diff(t, append=t[-1])
    if dur.sum() <= 0:
        return float(level.max(initial=0))
    order = np.argsort(level)
    cum = np.cumsum(dur[order]) / dur.sum()
    idx = min(int(np.searchsorted(cum, q / 100.0)), len(cum) - 1)
    return float(level[order][idx])


# name -> (label, overrides of our defaults). Ours first; the rest are for comparison.
OUR_SETTINGS: dict[str, tuple[str, dict[str, object]]] = {
    "ours": ("Ours (defaults)", {}),
    # No forecast spare: cores kept free for arrivals are bought for wait, not for cost.
    "ours-cost": ("Ours, cost-leaning (idle_timeout_s 30, launch_delay_s 120, no spare)",
                  {"idle_timeout_s": 30.0, "launch_delay_s": 120.0, "arrival_window_s": 0.0,
                   "spare_largest_jobs": 0}),
    "ours-wait": ("Ours, wait-leaning (spare_cores 16, idle_timeout_s 300)",
                  {"spare_cores": 16, "idle_timeout_s": 300.0}),
}
SCENARIOS = (*OUR_SETTINGS, "old", "parallelcluster", "static-p95")


def build_scenarios(trace: Trace, params: SimParams, names: list[str] | None = None,
                    base: AutoscalerConfig | None = None) -> list[Scenario]:
    base = base or AutoscalerConfig()
    base = base.model_copy(update={"max_workers": params.max_workers})
    fixed = fixed_shape_for(trace, base.shapes)
    out: list[Scenario] = []
    for name in names or list(SCENARIOS):
        if name in OUR_SETTINGS:
            label, upd = OUR_SETTINGS[name]
            out.append(Scenario(name, label, base.model_copy(update=upd)))
        elif name == "old":
            cfg = base.model_copy(update={"policy": "naive", "interval_s": 30.0,
                                          "fixed_shape": fixed.name})
            out.append(Scenario(name, f"Old (+/-1 per 30 s, {fixed.name})", cfg))
        elif name == "parallelcluster":
            cfg = base.model_copy(update={"policy": "parallelcluster",
                                          "fixed_shape": fixed.name})
            out.append(Scenario(name, f"ParallelCluster-like ({fixed.name}, 10 min idle)", cfg))
        elif name == "static-p95":
            cores = demand_percentile(trace, 95.0)
            n = min(max(math.ceil(cores / fixed.cpus), 1), params.max_workers)
            cfg = base.model_copy(update={"fixed_shape": fixed.name})
            out.append(Scenario(name, f"Static p95 ({n} x {fixed.name})", cfg, n))
        elif name.startswith("ours:"):  # a sweep point: ours:key=value,key=value
            out.append(Scenario(name, f"Ours, {name[5:]}",
                                base.model_copy(update=_overrides(base, name[5:]))))
        else:
            raise ConfigError(f"unknown scenario {name!r} (choose from "
                              f"{', '.join(SCENARIOS)}, or ours:key=value,...)")
    return out


def _overrides(base: AutoscalerConfig, spec: str) -> dict[str, object]:
    """'idle_timeout_s=300,spare_cores=8' -> validated overrides of our config."""
    upd: dict[str, object] = {}
    for item in filter(None, spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in AutoscalerConfig.model_fields:
            raise ConfigError(f"bad scenario setting {item!r} (want key=value with a key of "
                              "the autoscaler config)")
        upd[key] = value
    try:
        merged = AutoscalerConfig.model_validate({**base.model_dump(), **upd})
    except ValueError as exc:
        raise ConfigError(f"bad scenario settings {spec!r}: {exc}") from None
    return {k: getattr(merged, k) for k in upd}

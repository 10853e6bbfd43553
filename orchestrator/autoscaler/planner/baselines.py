"""Policies kept for comparison (the simulator runs them side by side with ours).

- naive: the old control panel's rule. One instance up when jobs outnumber slots, one
  down when slots outnumber jobs, per cycle; booting instances are not counted.
- parallelcluster: like AWS ParallelCluster's Slurm plugin. One compute instance type,
  the whole need launched at once, nodes powered down after 10 minutes idle.

Both still obey the hard rules: only our tagged workers, never a claimed one.
"""

from __future__ import annotations

from functools import lru_cache

from orchestrator.autoscaler.planner.binpack import plan_binpack
from orchestrator.autoscaler.planner.classify import classify
from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import (
    Drain,
    Launch,
    Observation,
    Plan,
    Removal,
    RemovalAction,
)
from orchestrator.autoscaler.planner.packing import aggregate, best_shape

# Its default ScaledownIdletime (10 minutes).
PARALLELCLUSTER_IDLE_S = 600.0


def fixed_shape(obs: Observation, cfg: AutoscalerConfig) -> InstanceShape | None:
    """cfg.fixed_shape, else the cheapest shape that fits the largest idle job."""
    if cfg.fixed_shape is not None:
        return cfg.shape(cfg.fixed_shape)
    groups = aggregate(obs.idle_jobs)
    shape: InstanceShape | None = None
    for g in groups:  # biggest first
        one = type(g)(g.cpus, g.memory_mb, g.gpus, 1)
        choice = best_shape(one, cfg.shapes)
        if choice is not None:
            shape = choice[0]
            break
    return shape or min(cfg.shapes, key=lambda s: (s.price_per_hour, s.cpus))


def plan_naive(obs: Observation, cfg: AutoscalerConfig, now: float) -> Plan:
    pool = classify(obs, cfg, now)
    jobs = sum(j.count for j in obs.idle_jobs) + obs.running_jobs
    slots = sum(sd.total_cpus for _, sd in pool.joined)
    if jobs > slots and pool.active < cfg.max_workers:
        shape = fixed_shape(obs, cfg)
        if shape is not None:
            return Plan(launches=(Launch(shape.name, 1, f"{jobs} jobs > {slots} slots"),),
                        desired_workers=pool.active + 1, current_workers=pool.active,
                        booting_workers=len(pool.booting))
    if slots > jobs and pool.active > cfg.min_workers:
        idle = [(i, sd) for i, sd in pool.joined if not sd.claimed]
        if idle:
            inst, _ = min(idle, key=lambda p: (p[1].unclaimed_since or now, p[0].instance_id))
            why = f"{slots} slots > {jobs} jobs"
            action = RemovalAction.STOP if cfg.warm_pool else RemovalAction.TERMINATE
            return Plan(drains=(Drain(inst.instance_id, why),),
                        removals=(Removal(inst.instance_id, action, why),),
                        desired_workers=pool.active - 1, current_workers=pool.active,
                        booting_workers=len(pool.booting))
    return Plan(desired_workers=pool.active, current_workers=pool.active,
                booting_workers=len(pool.booting))


@lru_cache(maxsize=64)
def parallelcluster_config(cfg: AutoscalerConfig, shape: InstanceShape) -> AutoscalerConfig:
    """What ParallelCluster-like runs our packing with: one type, its idle timeout, the
    queue's need only (no forecast spare, no surplus timeout)."""
    return cfg.model_copy(update={
        "shapes": (shape,), "idle_timeout_s": PARALLELCLUSTER_IDLE_S,
        "max_launch_per_cycle": max(cfg.max_workers, 1), "min_workers": cfg.min_workers,
        # the queue's need only
        "arrival_window_s": 0.0, "spare_largest_jobs": 0, "surplus_idle_s": 0.0,
    })


def plan_parallelcluster(obs: Observation, cfg: AutoscalerConfig, now: float) -> Plan:
    shape = fixed_shape(obs, cfg)
    if shape is None:
        return plan_binpack(obs, cfg, now)
    return plan_binpack(obs, parallelcluster_config(cfg, shape), now)

"""Spare cores: how many to keep free beyond the queue's need, and which machines buy them."""

from __future__ import annotations

import math

from orchestrator.autoscaler.planner.classify import Pool
from orchestrator.autoscaler.planner.config import AutoscalerConfig


def spare_target(pool: Pool, cfg: AutoscalerConfig, arrivals: int = 0) -> int:
    """Static spare (spare_cores, spare_fraction of busy cores) plus the arrivals'."""
    busy = sum(sd.total_cpus - sd.free_cpus for _, sd in pool.joined)
    return cfg.spare_cores + math.ceil(cfg.spare_fraction * busy) + arrivals


def cpus_of(cfg: AutoscalerConfig, instance_type: str) -> int:
    shape = cfg.shape(instance_type)
    return 0 if shape is None else shape.cpus


def price_of(cfg: AutoscalerConfig, instance_type: str) -> float:
    shape = cfg.shape(instance_type)
    return 0.0 if shape is None else shape.price_per_hour


def spare_shapes(gap: int, cfg: AutoscalerConfig, launchable: int, unit: int = 0,
                 room: int = 0) -> list[str]:
    """Machines for `gap` spare cores. Machines of the cheapest shape that takes one job
    of `unit` cores (the largest expected) while that needs at most `room` machines:
    arrivals' jobs end at different times, and a small machine leaves when its own do,
    where a large one stays up for the longest of them. Else the cheapest one that has
    the whole gap, the largest ones if none does."""
    out: list[str] = []
    cpu_shapes = [s for s in cfg.shapes if s.gpus == 0] or list(cfg.shapes)
    if 0 < unit < gap:
        fits = [s for s in cpu_shapes if s.cpus >= unit]
        if fits:
            small = min(fits, key=lambda s: (s.price_per_hour / s.cpus, s.cpus))
            # Short of room for instances (binpack._fewer_machines): as much as it allows.
            return [small.name] * max(min(-(-gap // small.cpus), launchable, room), 0)
    while gap > 0 and len(out) < launchable:
        fits = [s for s in cpu_shapes if s.cpus >= gap]
        shape = (min(fits, key=lambda s: (s.price_per_hour, s.cpus)) if fits
                 else max(cpu_shapes, key=lambda s: (s.cpus, -s.price_per_hour)))
        out.append(shape.name)
        gap -= shape.cpus
    return out

"""What a machine of each shape really offers jobs, and why a job fits none.

A shape's nominal resources (EC2's numbers) are not what its workers advertise: the
kernel keeps part of the memory, the image part of the root volume, and a GPU without a
driver is no GPU to HTCondor. Planning with nominal numbers launches, for a job asking a
type's nominal memory, machine after machine that cannot run it. So the planner sizes
each shape by what joined workers of its type advertised (remembered by the runtime
across passes and restarts), and before the first has joined, by nominal less a reserve
that errs on the small side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

from orchestrator.autoscaler.planner.config import AutoscalerConfig, InstanceShape
from orchestrator.autoscaler.planner.model import Capacity
from orchestrator.autoscaler.planner.packing import JobGroup

MB_PER_GB = 1024


def reserved_memory_mb(shape: InstanceShape, cfg: AutoscalerConfig) -> int:
    """Nominal memory less the configured reserve (never below 1 MB)."""
    reserve = cfg.memory_reserve_mb + math.ceil(cfg.memory_reserve_fraction * shape.memory_mb)
    return max(shape.memory_mb - reserve, 1)


def root_volume_gb(shape: InstanceShape, cfg: AutoscalerConfig) -> int:
    return shape.disk_gb or cfg.root_volume_gb


def offered(shape: InstanceShape, cfg: AutoscalerConfig,
            learned: Capacity | None) -> InstanceShape:
    """The shape as its workers offer it: learned if any has joined, else estimated."""
    gpus = shape.gpus if cfg.gpu_workers else 0
    if learned is not None:
        return shape.model_copy(update={
            "cpus": max(learned.cpus, 1), "memory_mb": max(learned.memory_mb, 1),
            "gpus": min(learned.gpus, gpus) if cfg.gpu_workers else 0,
            "disk_mb": max(learned.disk_mb, 0)})
    disk = max(root_volume_gb(shape, cfg) - cfg.disk_reserve_gb, 1) * MB_PER_GB
    return shape.model_copy(update={"memory_mb": reserved_memory_mb(shape, cfg),
                                    "gpus": gpus, "disk_mb": disk})


def effective_config(cfg: AutoscalerConfig, learned: Mapping[str, Capacity]
                     ) -> AutoscalerConfig:
    """`cfg` with every shape sized by what its workers offer (planner's view)."""
    known = frozenset((s.name, learned[s.name]) for s in cfg.shapes if s.name in learned)
    return _effective(cfg, known)


@lru_cache(maxsize=16)  # the same config and capacities pass after pass
def _effective(cfg: AutoscalerConfig, known: frozenset[tuple[str, Capacity]]
               ) -> AutoscalerConfig:
    learned = dict(known)
    shapes = tuple(offered(s, cfg, learned.get(s.name)) for s in cfg.shapes)
    return cfg.model_copy(update={"shapes": shapes})


def resources_text(cpus: int, memory_mb: int, gpus: int, disk_mb: int) -> str:
    parts = [f"{cpus} cpus", f"{memory_mb} MB"]
    if gpus:
        parts.append(f"{gpus} gpus")
    if disk_mb:
        parts.append(f"{disk_mb} MB disk")
    return ", ".join(parts)


def why_unschedulable(g: JobGroup, shapes: Sequence[InstanceShape], cfg: AutoscalerConfig,
                      learned: Mapping[str, Capacity]) -> str:
    """One line: what the jobs ask, and what the shapes they match offer (the largest
    few), or that their Requirements match no shape's machine ad."""
    asks = f"asks {resources_text(g.cpus, g.memory_mb, g.gpus, g.disk_mb)}"
    if g.gpus and not cfg.gpu_workers:
        return (f"{asks}; the worker image drives no GPU (gpu_workers off), so no shape "
                "offers one")
    matched = [s for s in shapes if g.runs_on(s.name)]
    if not matched:
        return f"{asks}; its Requirements match no shape's machine ad"
    largest = sorted(matched, key=lambda s: (s.cpus, s.memory_mb, s.gpus, s.disk_mb),
                     reverse=True)[:3]
    offers = "; ".join(
        f"{s.name} offers {resources_text(s.cpus, s.memory_mb, s.gpus, s.disk_mb)} "
        f"({'as its workers advertise' if s.name in learned else 'nominal less reserve'})"
        for s in largest)
    return f"{asks}; {offers}"

"""Scale-in: which idle workers to drain and remove, and smaller machines to swap in for
large idle ones kept as spare."""

from __future__ import annotations

from orchestrator.autoscaler.planner.classify import Pool
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.model import Drain, Instance, Removal, RemovalAction, Startd
from orchestrator.autoscaler.planner.spare import cpus_of, price_of, spare_shapes

# A large idle worker kept as spare is swapped for a smaller machine when that costs less
# than this share of its price: below it the saving pays for the churn of a launch.
SWAP_PRICE_RATIO = 0.6


def scale_in(pool: Pool, active: int, cfg: AutoscalerConfig, now: float, busy: set[str],
              launching: int, spare: int | None, notes: list[str]
              ) -> tuple[tuple[Drain, ...], tuple[Removal, ...], list[str]]:
    """Workers wholly unclaimed for idle_timeout_s and not needed by the queue, longest
    idle first, never below min_workers, nor below the spare cores (`spare` is how many
    may go; None when no spare is wanted). Also returns smaller machines to launch for
    spare where they replace a large idle one."""
    floor = cfg.min_workers - launching
    removable = active - max(floor, 0)
    candidates: list[tuple[float, Instance, Startd]] = []
    for inst, sd in pool.joined:
        if sd.claimed or inst.instance_id in busy:
            continue
        if sd.unclaimed_since is None:
            notes.append(f"{inst.instance_id}: unclaimed since an unknown time; kept")
            continue
        idle_for = now - sd.unclaimed_since
        if idle_for >= cfg.idle_timeout_s or (spare is not None and cfg.surplus_idle_s
                                              and idle_for >= cfg.surplus_idle_s):
            candidates.append((idle_for, inst, sd))
    candidates.sort(key=lambda c: (-c[0], c[1].instance_id))
    if len(candidates) > removable:
        notes.append(f"{len(candidates)} idle workers, removing {max(removable, 0)} "
                     f"(min_workers {cfg.min_workers})")
        candidates = candidates[:max(removable, 0)]
    swaps: list[str] = []
    if spare is not None:
        keep = []
        for c in candidates:
            cpus = c[2].total_cpus
            if cpus <= spare:
                spare -= cpus
                keep.append(c)
                continue
            if c[0] < cfg.idle_timeout_s:
                continue  # not surplus: kept until idle_timeout_s
            # Needed as spare, but a smaller machine would do for much less: swap them.
            smaller = spare_shapes(cpus - spare, cfg, 1)
            price = price_of(cfg, c[1].instance_type)
            if smaller and price_of(cfg, smaller[0]) < SWAP_PRICE_RATIO * price:
                swaps += smaller
                spare += cpus_of(cfg, smaller[0]) - cpus
                keep.append(c)
        if len(keep) < len(candidates):
            notes.append(f"{len(candidates) - len(keep)} idle workers kept as spare cores")
        candidates = keep
    action = RemovalAction.STOP if cfg.warm_pool else RemovalAction.TERMINATE
    drains: list[Drain] = []
    removals: list[Removal] = []
    for idle_for, inst, sd in candidates:
        why = (f"unclaimed {idle_for:.0f}s >= idle_timeout_s {cfg.idle_timeout_s:.0f}"
               if idle_for >= cfg.idle_timeout_s else
               f"unclaimed {idle_for:.0f}s >= surplus_idle_s {cfg.surplus_idle_s:.0f}, "
               "beyond the queue's need and the spare")
        if not sd.draining:
            drains.append(Drain(inst.instance_id, why))
        removals.append(Removal(inst.instance_id, action, why))
    return tuple(drains), tuple(removals), swaps

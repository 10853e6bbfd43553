"""Our policy: scale out by the bin-packed need of the queue, scale in idle workers only.

One pass, top to bottom: classify our workers (classify.py: joined, booting, not joined,
stopped), place idle jobs on free and booting capacity, open the cheapest new instances for
the rest, clamp to the limits, keep spare cores (spare.py), then pick idle workers to
remove (scale_in.py). Instances without our pool tag or with another role (the central
manager) are only counted as "not ours", never touched.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from orchestrator.autoscaler.planner.capacity import effective_config, why_unschedulable
from orchestrator.autoscaler.planner.classify import Pool, booting_shapes, classify, free_bins
from orchestrator.autoscaler.planner.config import AutoscalerConfig
from orchestrator.autoscaler.planner.forecast import forecast_spare, largest_request
from orchestrator.autoscaler.planner.model import (
    Instance,
    Launch,
    Observation,
    Plan,
    Replacement,
    Start,
    Undrain,
    Unschedulable,
)
from orchestrator.autoscaler.planner.packing import (
    Bin,
    JobGroup,
    aggregate,
    fit_existing,
    groups_held_by,
    pack_new,
    shape_disk,
)
from orchestrator.autoscaler.planner.scale_in import scale_in
from orchestrator.autoscaler.planner.spare import cpus_of, spare_shapes, spare_target

# Past this share of max_workers, the queue's need is packed onto fewer, larger machines
# (_fewer_machines): a pool of small machines full of long jobs would otherwise reach the
# cap with jobs still waiting, and the other half keeps room for bursts.
LARGER_MACHINES_ABOVE = 0.5


def new_need(left: list[JobGroup], booting: list[Instance], cfg: AutoscalerConfig,
             min_cpus: float = 0) -> tuple[list[Bin], list[JobGroup]]:
    """New machines for the jobs free capacity cannot take, net of booting ones.

    Booting machines are matched by type against the ideal packing of the queue, not
    first-fit: first-fit onto a different order of the same machines can leave a job out
    and launch again every cycle while they boot. Jobs of ideal machines without a booting
    match then go first-fit onto the unmatched booting ones; the rest is launched.
    """
    ideal, unsched = pack_new(_copy(left), cfg.shapes, min_cpus, cfg.spot)
    spare = Counter(i.instance_type for i in booting)
    unmatched: list[Bin] = []
    for b in ideal:
        if spare[b.owner] > 0:
            spare[b.owner] -= 1
        else:
            unmatched.append(b)
    if not unmatched:
        return [], unsched
    rest = groups_held_by(left, unmatched)
    bins = []
    for t, n in spare.items():
        shape = cfg.shape(t)
        if shape is not None:
            bins += [Bin(t, shape.cpus, shape.memory_mb, shape.gpus, shape=t,
                         disk_mb=shape_disk(shape)) for _ in range(n)]
    fit_existing(rest, bins)
    new_bins, _ = pack_new([g for g in rest if g.count > 0], cfg.shapes, min_cpus, cfg.spot)
    return new_bins, unsched


def _relaunched(pool: Pool, cfg: AutoscalerConfig, booting: list[Instance],
                packing: Callable[[list[Instance]], tuple[list[Bin], list[JobGroup]]]
                ) -> tuple[tuple[list[Bin], list[JobGroup]], set[str]]:
    """The queue's new machines, and which replaced ones (never joined, or lost) to launch
    again: those whose capacity the packing counts on (it would launch more of their type
    without them; all of them if it would launch other types), and those that keep the
    pool at min_workers; none when nothing waits for them."""
    packed = packing(booting)
    replaced = pool.not_joined + pool.lost
    if not replaced:
        return packed, set()
    ids = {i.instance_id for i in replaced}
    without = packing([i for i in booting if i.instance_id not in ids])
    short = Counter(b.owner for b in without[0]) - Counter(b.owner for b in packed[0])
    out = set()
    for inst in replaced:
        if short[inst.instance_type] > 0:
            short[inst.instance_type] -= 1
            out.add(inst.instance_id)
    if +short:  # it would launch other types: relaunching them all is what fits for sure
        out = ids
    below_min = cfg.min_workers - (pool.active - len(replaced) + len(out) + len(packed[0]))
    for inst in replaced:
        if below_min > 0 and inst.instance_id not in out:
            out.add(inst.instance_id)
            below_min -= 1
    return packed, out


def _fewer_machines(left: list[JobGroup], booting: list[Instance], cfg: AutoscalerConfig,
                    room: int) -> tuple[list[Bin], list[JobGroup]]:
    """Running short of room for instances: the same need on fewer, larger machines, or a
    pool of small ones full of long jobs would leave the queue stuck at the cap. The smallest
    that keep the pool within `room` more machines, as large as are as cheap per job if
    none does: a large machine stays up for the longest of its many jobs."""
    floors = sorted({s.cpus for s in cfg.shapes})[1:] if room > 0 else []
    found: tuple[list[Bin], list[JobGroup]] | None = None
    lo, hi = 0, len(floors) - 1
    while lo <= hi:  # fewer machines the higher the floor
        mid = (lo + hi) // 2
        packed = new_need(left, booting, cfg, floors[mid])
        if len(packed[0]) <= room:
            found, hi = packed, mid - 1
        else:
            lo = mid + 1
    return found or new_need(left, booting, cfg, math.inf)


def _copy(groups: list[JobGroup]) -> list[JobGroup]:
    return [g.like(g.count) for g in groups]


def fallbacks(itype: str, cfg: AutoscalerConfig, groups: list[JobGroup]) -> tuple[str, ...]:
    """Types to launch instead of `itype` when EC2 has no capacity for it: at least as
    large (as their workers offer), of the same architecture, and matched by every job
    that matches `itype`, so a substitute still runs what it was launched for. Cheapest
    first."""
    shape = cfg.shape(itype)
    if shape is None:
        return ()
    limited = [g for g in groups if g.shapes is not None and itype in g.shapes]
    out = sorted((s for s in cfg.shapes if s.name != itype and s.arch == shape.arch
                  and s.cpus >= shape.cpus and s.memory_mb >= shape.memory_mb
                  and s.gpus >= shape.gpus and s.disk_mb >= shape.disk_mb
                  and all(g.runs_on(s.name) for g in limited)),
                 key=lambda s: (s.price(cfg.spot), s.name))
    return tuple(s.name for s in out)


def plan_binpack(obs: Observation, cfg: AutoscalerConfig, now: float) -> Plan:
    notes: list[str] = []
    # Shapes sized by what their workers offer, not by EC2's nominal numbers.
    cfg = effective_config(cfg, obs.capacities)
    pool = classify(obs, cfg, now, notes)
    groups = aggregate(obs.idle_jobs, now - cfg.launch_delay_s if cfg.launch_delay_s else None)
    idle_total = sum(g.count for g in groups)
    before = [g.count for g in groups]
    capacity = free_bins(pool)
    free_cores = sum(b.cpus for b in capacity)
    busy_owners = fit_existing(groups, capacity)
    undrains: list[Undrain] = []
    # A worker claimed while our drain is on (a claim the startd took before it drained):
    # cancel the drain, or its jobs are evicted at MaxJobRetirementTime; its free
    # resources take jobs again.
    claimed = [Bin(i.instance_id, sd.free_cpus, sd.free_memory_mb, sd.free_gpus,
                   shape=i.instance_type, disk_mb=sd.free_disk_mb if sd.total_disk_mb else None)
               for i, sd in pool.joined if sd.draining and sd.claimed and sd.drained_by_us]
    for b in claimed:
        undrains.append(Undrain(b.owner, "claimed while draining: cancel the drain so its "
                                "jobs finish instead of being evicted"))
        free_cores += b.cpus
    busy_owners |= fit_existing(groups, claimed)
    # An idle worker draining for scale-in that the queue needs again is cheaper to keep
    # than a new one: cancel its drain. It was unclaimed, so all of it is free.
    draining = [Bin(i.instance_id, sd.total_cpus, sd.total_memory_mb, sd.total_gpus,
                    shape=i.instance_type, disk_mb=sd.total_disk_mb or None)
                for i, sd in pool.joined if sd.draining and not sd.claimed]
    if draining and any(g.count for g in groups):
        cores = {b.owner: b.cpus for b in draining}
        taken = fit_existing(groups, draining)
        for b in draining:
            if b.owner in taken:
                undrains.append(Undrain(b.owner, f"{b.jobs} idle jobs fit; cancel its drain "
                                        "instead of launching"))
                free_cores += cores[b.owner]
        busy_owners |= taken
    # The oldest jobs are matched first, so those left over are the youngest: launch only
    # for the ones among them that have waited launch_delay_s.
    waiting = queue_cores = 0
    for g, n in zip(groups, before, strict=True):
        placed = n - g.count
        young = g.count - max(g.ready - placed, 0)
        waiting += young
        g.count -= young
        queue_cores += g.cpus * (placed + g.count)  # young ones left out of the spare count
    left = [g for g in groups if g.count > 0]
    if waiting:
        notes.append(f"{waiting} idle jobs younger than launch_delay_s "
                     f"{cfg.launch_delay_s:.0f} wait for free capacity")
    booting = booting_shapes(pool, cfg, notes)

    headroom = max(cfg.max_workers - pool.active, 0)
    # Instances the pool may still add before it packs onto larger machines.
    room = math.floor(cfg.max_workers * LARGER_MACHINES_ABOVE) - pool.active

    def packing(machines: list[Instance]) -> tuple[list[Bin], list[JobGroup]]:
        packed = new_need(left, machines, cfg)
        return packed if len(packed[0]) <= room else _fewer_machines(left, machines, cfg, room)

    (new_bins, unsched), relaunch = _relaunched(pool, cfg, booting, packing)
    # Replaced machines that are not relaunched are capacity no more (for the spare too).
    dropped = {i.instance_id for i in pool.not_joined + pool.lost} - relaunch
    booting = [i for i in booting if i.instance_id not in dropped]
    active = pool.active - len(dropped)  # after this pass, for min_workers
    need = len(new_bins)
    allowed = min(need, headroom, cfg.max_launch_per_cycle)
    if allowed < need:
        notes.append(f"need {need} new instances; launching {allowed} (max_workers "
                     f"{cfg.max_workers}, active {pool.active}, max_launch_per_cycle "
                     f"{cfg.max_launch_per_cycle})")
    wanted = [b.owner for b in new_bins[:allowed]]
    jobs_new = sum(b.jobs for b in new_bins[:allowed])
    # Cores left free once the queue is placed on free, booting and new machines.
    spare = (free_cores + sum(cpus_of(cfg, i.instance_type) for i in booting)
             + sum(cpus_of(cfg, t) for t in wanted) - queue_cores
             + sum(g.cpus * g.count for g in unsched))
    largest = largest_request(obs, cfg)
    target = spare_target(pool, cfg, forecast_spare(obs, cfg, now, largest))
    if spare < target:
        launchable = min(headroom, cfg.max_launch_per_cycle) - len(wanted)
        extra = spare_shapes(target - spare, cfg, launchable, largest, room - len(wanted))
        if extra:
            notes.append(f"{spare} spare cores < target {target}: +{', '.join(extra)}")
        wanted += extra
        spare += sum(cpus_of(cfg, t) for t in extra)
    if active + len(wanted) < cfg.min_workers:
        cheapest = min(cfg.shapes, key=lambda s: (s.price(cfg.spot), s.cpus))
        gap = min(cfg.min_workers - active - len(wanted),
                  cfg.max_launch_per_cycle - len(wanted), headroom - len(wanted))
        wanted += [cheapest.name] * max(gap, 0)

    drains, removals, swaps = scale_in(pool, active, cfg, now, busy_owners, len(wanted),
                                        spare - target if target else None, notes)
    wanted += swaps[:max(min(headroom, cfg.max_launch_per_cycle) - len(wanted), 0)]
    why = (f"{idle_total} idle jobs; {jobs_new} need new capacity beyond free and booting "
           f"({len(pool.booting)} booting)")
    if len(wanted) > allowed:
        why += f"; spare cores {spare} of target {target}, min_workers {cfg.min_workers}"
    starts, launches = _starts_and_launches(wanted, pool, cfg, why, groups)

    why_replaced = {i.instance_id: f"not joined {now - i.launch_time:.0f}s after launch "
                                   f"(join_timeout_s {cfg.join_timeout_s:.0f})"
                    for i in pool.not_joined}
    why_replaced |= {i.instance_id: f"missing from the collector for "
                                    f"{now - (i.missing_since or now):.0f}s with no job on it "
                                    f"(lost_timeout_s {cfg.lost_timeout_s:.0f})"
                     for i in pool.lost}
    replacements = tuple(
        Replacement(i.instance_id, i.instance_type, why_replaced[i.instance_id] + (
            "" if i.instance_id in relaunch else "; no idle job needs its capacity"),
            relaunch=i.instance_id in relaunch)
        for i in pool.not_joined + pool.lost)

    unschedulable = tuple(
        Unschedulable(g.cpus, g.memory_mb, g.gpus, g.count, tuple(g.clusters),
                      why_unschedulable(g, cfg.shapes, cfg, obs.capacities), g.disk_mb)
        for g in unsched)
    extra_wanted = len(wanted) - allowed  # spare, min_workers, swaps
    desired = min(max(active + need + extra_wanted - len(removals), cfg.min_workers),
                  cfg.max_workers)
    if pool.stopped and not cfg.warm_pool:
        notes.append(f"{len(pool.stopped)} stopped workers left alone (warm_pool off)")
    return Plan(launches=launches, starts=starts, drains=drains, removals=removals,
                undrains=tuple(undrains), replacements=replacements, unschedulable=unschedulable,
                desired_workers=desired, current_workers=pool.active,
                booting_workers=len(pool.booting), notes=tuple(notes))


def _starts_and_launches(wanted: list[str], pool: Pool, cfg: AutoscalerConfig, why: str,
                         groups: list[JobGroup]) -> tuple[tuple[Start, ...], tuple[Launch, ...]]:
    counts = Counter(wanted)
    starts: list[Start] = []
    if cfg.warm_pool:
        for inst in sorted(pool.stopped, key=lambda i: i.instance_id):
            if counts[inst.instance_type] > 0:
                counts[inst.instance_type] -= 1
                starts.append(Start(inst.instance_id, inst.instance_type,
                                    f"warm start instead of a launch: {why}"))
    launches = tuple(Launch(t, n, why, fallbacks(t, cfg, groups))
                     for t, n in counts.items() if n > 0)
    return tuple(starts), launches
